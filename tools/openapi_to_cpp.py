#!/usr/bin/env python3
"""Converts docs/openapi.yaml to JSON and writes it as a C++ string constant for the gateway."""
import json
import sys

import yaml


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    # Split into chunks: compilers limit the length of one string literal.
    chunks = [text[i:i + 8000] for i in range(0, len(text), 8000)]
    with open(dst, "w", encoding="utf-8") as out:
        out.write("// Generated from docs/openapi.yaml by tools/openapi_to_cpp.py. Do not edit.\n")
        out.write("namespace hydrox::gateway {\nextern const char* const kOpenApiJson;\n")
        out.write("const char* const kOpenApiJson =\n")
        for c in chunks:
            out.write('R"HYDROXJSON(' + c + ')HYDROXJSON"\n')
        out.write(";\n}  // namespace hydrox::gateway\n")


if __name__ == "__main__":
    main()
