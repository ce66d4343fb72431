"""Print the Kubernetes manifests given as arguments as JSON, for the k8s
test (tests/tests/it/k8s.rs): {"docs": [{"file", "doc"}], "commands":
[{"file", "kind", "name", "container", "argv"}]}.

`commands` holds every hps-master / hps-worker command line in every
container and init container. A container that runs `sh -c SCRIPT` is
split into the script's simple commands with shlex (words, `;`, `&&`,
`||`, `|`, `&`, newlines), and `$VAR`, `${VAR}` and `"$VAR"` are left for
the test to substitute. Run with the kubernetes-validate venv's python,
which has PyYAML.
"""

import json
import shlex
import sys

import yaml

HPS = ("hps-master", "hps-worker")
SEPARATORS = {";", "&&", "||", "|", "&", "\n", ";;", "(", ")"}


def simple_commands(script):
    lex = shlex.shlex(script, posix=True, punctuation_chars=";&|()")
    lex.whitespace = " \t\r"  # newlines separate commands
    lex.whitespace_split = True
    cmd = []
    for tok in lex:
        if tok in SEPARATORS or set(tok) <= set(";&|()\n"):
            if cmd:
                yield cmd
            cmd = []
        else:
            cmd.append(tok)
    if cmd:
        yield cmd


def hps_argvs(argv):
    if len(argv) >= 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c":
        for cmd in simple_commands(argv[2]):
            while cmd and cmd[0] in ("exec", "nohup"):
                cmd = cmd[1:]
            if cmd and cmd[0].rsplit("/", 1)[-1] in HPS:
                yield cmd
    elif argv and argv[0].rsplit("/", 1)[-1] in HPS:
        yield argv


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return (spec.get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        return (job.get("template") or {}).get("spec") or {}
    return {}


def main(paths):
    out = {"docs": [], "commands": []}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                out["docs"].append({"file": path, "doc": doc})
                spec = pod_spec(doc)
                for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                    argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
                    for cmd in hps_argvs(argv):
                        out["commands"].append(
                            {
                                "file": path,
                                "kind": doc.get("kind"),
                                "name": (doc.get("metadata") or {}).get("name"),
                                "container": c.get("name"),
                                "argv": cmd,
                            }
                        )
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
