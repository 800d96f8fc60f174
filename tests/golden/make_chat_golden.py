#!/usr/bin/python3
"""Render the chat-template test cases with Python Jinja2 exactly as transformers does.

Reads tests/data/chat/cases.jsonl (one case a line:
  {"name", "messages", "tools"?, "add_generation_prompt", "add_vision_id"?, "c"?})
and writes tests/data/chat/golden.jsonl, one line a case, in the same order:
  {"name", "prompt"}   what Jinja renders, or
  {"name", "error"}    "<exception type>: <message>" where Jinja raises.

A case may declare where qvl's C renderer (inference/chat_template.c) deliberately differs
from Jinja, under "c" (the file comment of chat_template.c says why):
  "c": {"error": "<substring>"}      C refuses the input, its message contains the substring;
  "c": {"as": {<case fields>}}       C renders what Jinja renders for the case with these
                                     fields replaced: the golden line gets "c_prompt" as well.
tests/check_chat_template.c renders every case in C and compares byte for byte.

The environment is transformers' (utils/chat_template_utils.py, _compile_jinja_template):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[jinja2.ext.loopcontrols]), a tojson filter over json.dumps(ensure_ascii=False, …)
and a raise_exception global; render(messages=, tools=, add_generation_prompt=, add_vision_id=).
tools absent from a case is None, as transformers passes it.

Run with the system Python (python3-jinja2 3.1.2):
  /usr/bin/python3 tests/golden/make_chat_golden.py [cases.jsonl golden.jsonl]
"""
import hashlib
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_SHA256 = "3636d0f0bd6bef02654cdffdc447b79cb2cef8ab02cc75267345946291a489e4"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compile_template(text):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(text)


def render(tmpl, case):
    """("prompt", text) or ("error", "Type: message")."""
    try:
        return "prompt", tmpl.render(messages=case["messages"], tools=case.get("tools"),
                                     add_generation_prompt=case["add_generation_prompt"],
                                     add_vision_id=case.get("add_vision_id", False))
    except Exception as ex:  # any Jinja or Python error is the golden result
        return "error", "%s: %s" % (type(ex).__name__, ex)


def main():
    cases_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/data/chat/cases.jsonl")
    golden_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests/data/chat/golden.jsonl")
    with open(os.path.join(ROOT, "inference/data/qwen3-vl/chat_template.jinja"), encoding="utf-8",
              newline="") as f:
        text = f.read()
    got = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if got != TEMPLATE_SHA256:
        sys.exit("chat_template.jinja: sha256 %s, expected %s" % (got, TEMPLATE_SHA256))
    tmpl = compile_template(text)

    out, names = [], set()
    with open(cases_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            case = json.loads(line)
            name = case["name"]
            if name in names:
                sys.exit("%s:%d: duplicate case name %s" % (cases_path, lineno, name))
            names.add(name)
            kind, value = render(tmpl, case)
            rec = {"name": name, kind: value}
            c = case.get("c", {})
            if "as" in c:
                alt = dict(case)
                alt.update(c["as"])
                akind, avalue = render(tmpl, alt)
                if akind != "prompt":
                    sys.exit("%s: the \"as\" form fails in Jinja too: %s" % (name, avalue))
                rec["c_prompt"] = avalue
            out.append(rec)

    with open(golden_path, "w", encoding="utf-8", newline="\n") as f:
        for rec in out:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print("%s: %d cases" % (golden_path, len(out)))


if __name__ == "__main__":
    main()
