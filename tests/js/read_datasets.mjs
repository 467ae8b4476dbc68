// Read every dataset and attribute of an HDF5 (NWB) file with h5wasm, the HDF5 reader behind
// the web viewers on DANDI, and write what it read as JSON (tests/test_js_reader.py compares it
// with what pynwb and h5py read).
//
// usage: node read_datasets.mjs FILE.nwb OUT.json
// OUT.json: {"datasets": {path: {"shape", "type", "size", "value"}}, "attributes": {path@name: value},
//            "errors": {path or path@name: message}}
// Values are h5wasm's JSON-compatible values (NaN and infinities as strings); object references
// are listed as "<reference>". Each object is read once, through its hard link; soft links
// (NWB links between objects) are followed by name only.
import { writeFileSync } from "node:fs";

const h5wasm = await import("h5wasm/node");
await h5wasm.ready;

const [file, out] = process.argv.slice(2);
const f = new h5wasm.File(file, "r");
const result = { datasets: {}, attributes: {}, errors: {}, links: {} };

function jsonable(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (value instanceof h5wasm.Reference || value instanceof Uint8Array) return "<reference>";
  if (ArrayBuffer.isView(value)) return Array.from(value, jsonable);
  if (Array.isArray(value)) return value.map(jsonable);
  if (typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonable(v)]));
  return value;
}

function readAttributes(entity, path) {
  let attrs;
  try {
    attrs = entity.attrs;
  } catch (error) {
    result.errors[`${path}@`] = String(error.message || error);
    return;
  }
  for (const name of Object.keys(attrs)) {
    try {
      result.attributes[`${path}@${name}`] = jsonable(attrs[name].json_value);
    } catch (error) {
      result.errors[`${path}@${name}`] = String(error.message || error);
    }
  }
}

function walk(group, path) {
  readAttributes(group, path);
  for (const name of group.keys()) {
    const child = path === "/" ? `/${name}` : `${path}/${name}`;
    const soft = group.get_link(child);
    if (soft) {
      result.links[child] = soft;
      continue;
    }
    let entity;
    try {
      entity = group.get(name);
    } catch (error) {
      result.errors[child] = String(error.message || error);
      continue;
    }
    if (entity instanceof h5wasm.Group) {
      walk(entity, child);
    } else if (entity instanceof h5wasm.Dataset) {
      try {
        const metadata = entity.metadata;
        result.datasets[child] = {
          shape: entity.shape,
          type: metadata.type,
          size: metadata.size,
          value: jsonable(entity.json_value),
        };
      } catch (error) {
        result.errors[child] = String(error.message || error);
      }
      readAttributes(entity, child);
    } else {
      result.errors[child] = `not a group or dataset: ${entity && entity.constructor.name}`;
    }
  }
}

walk(f, "/");
f.close();
writeFileSync(out, JSON.stringify(result));
