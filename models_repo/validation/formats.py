"""One validator per model format. Each returns the list of problems; empty means valid.

Messages say what is missing or wrong in words a user can act on.
"""

from __future__ import annotations

import struct
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from models_repo.validation.folder import ModelFolder
from portal import jsonlimits


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(folder: ModelFolder, key: str) -> tuple[object | None, str | None]:
    try:
        return fromstring(folder.read(key)), None
    except DefusedXmlException as exc:
        return None, f"{key} uses a forbidden XML feature ({type(exc).__name__})."
    except ParseError as exc:
        return None, f"{key} is not well-formed XML ({exc})."


def saved_model(folder: ModelFolder) -> list[str]:
    files, folders = folder.top()
    problems = []
    graph = {"saved_model.pb", "saved_model.pbtxt"} & files
    if not graph:
        problems.append("saved_model.pb (or saved_model.pbtxt) is missing.")
    elif folder.files[sorted(graph)[0]] == 0:
        problems.append(f"{sorted(graph)[0]} is empty.")
    if "variables" not in folders:
        problems.append("the variables/ folder is missing.")
    return problems


def pmml(folder: ModelFolder) -> list[str]:
    found = sorted(key for key in folder.files if key.lower().endswith(".pmml"))
    if not found:
        return ["no .pmml file was found."]
    if len(found) > 1:
        return [
            f"found {len(found)} .pmml files ({', '.join(found)}); a PMML model folder holds "
            "exactly one."
        ]
    root, error = _parse_xml(folder, found[0])
    if error:
        return [error]
    if _local_name(root.tag) != "PMML":
        return [f"{found[0]} has root element <{_local_name(root.tag)}>, not <PMML>."]
    return []


def openvino(folder: ModelFolder) -> list[str]:
    xmls = sorted(key for key in folder.files if key.endswith(".xml"))
    if not xmls:
        return ["no OpenVINO IR .xml file was found (an IR is model.xml plus model.bin)."]
    problems = []
    for key in xmls:
        weights = key[: -len(".xml")] + ".bin"
        if weights not in folder.files:
            problems.append(f"{weights} is missing beside {key}.")
            continue
        root, error = _parse_xml(folder, key)
        if error:
            problems.append(error)
        elif _local_name(root.tag) != "net":
            problems.append(f"{key} has root element <{_local_name(root.tag)}>, not <net>.")
    return problems


def tensorrt(folder: ModelFolder) -> list[str]:
    engines = sorted(key for key in folder.files if key.endswith((".plan", ".engine")))
    if not engines:
        return ["no serialized TensorRT engine (.plan or .engine file) was found."]
    if all(folder.files[key] == 0 for key in engines):
        return [f"{', '.join(engines)} is empty."]
    return []


def decode_angel_meta(data: bytes) -> dict:
    """An Angel matrix ``meta`` file: a 4-byte big-endian length, then that much UTF-8 JSON."""
    if len(data) < 4:
        raise ValueError("shorter than its 4-byte length header")
    (length,) = struct.unpack(">i", data[:4])
    if length < 0 or len(data) < 4 + length:
        raise ValueError(f"declares {length} bytes of JSON but holds {len(data) - 4}")
    meta = jsonlimits.loads(data[4 : 4 + length].decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("its JSON is not an object")
    return meta


def angel(folder: ModelFolder) -> list[str]:
    files, folders = folder.top()
    problems = []
    if "graph.json" not in files:
        problems.append("graph.json is missing.")
    else:
        try:
            graph = jsonlimits.loads(folder.read("graph.json").decode("utf-8"))
            if not isinstance(graph, dict) or not isinstance(graph.get("layers"), list):
                problems.append("graph.json has no 'layers' list.")
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"graph.json is not valid JSON ({exc}).")
    matrices = sorted(name for name in folders if f"{name}/meta" in folder.files)
    if not matrices:
        problems.append("no matrix folder (e.g. input_weight/ with a meta file) was found.")
    for name in matrices:
        try:
            meta = decode_angel_meta(folder.read(f"{name}/meta"))
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{name}/meta does not decode: {exc}.")
            continue
        parts = meta.get("partMetas") or {}
        for part in parts.values() if isinstance(parts, dict) else []:
            data_file = f"{name}/{part.get('fileName')}" if isinstance(part, dict) else None
            if data_file and data_file not in folder.files:
                problems.append(f"{data_file} (named in {name}/meta) is missing.")
    return problems


def custom(folder: ModelFolder) -> list[str]:
    # A custom runtime's format is the tenant's own: the only rule we can check is non-empty.
    return [] if folder.files else ["the model folder is empty."]


VALIDATORS = {
    "saved_model": saved_model,
    "pmml": pmml,
    "openvino": openvino,
    "tensorrt": tensorrt,
    "angel": angel,
    "custom": custom,
}
