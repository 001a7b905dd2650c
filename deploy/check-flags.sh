#!/usr/bin/env bash
# Checks that the deploy manifests only use ffc flags that exist.
#
#   deploy/check-flags.sh [--bin PATH/TO/ffc] [FILE...]
#
# For every ffc invocation in the files (docker compose services, Kubernetes
# containers with the ffc image, `ffc ...` lines in their shell scripts and
# in the code blocks of Markdown files) it resolves the subcommand and checks
# each --flag against `ffc <subcommand> --help`. Every FFC_* variable (a
# container's env, envFrom ConfigMaps/Secrets, compose environment, any
# ConfigMap key) must name a flag of some ffc command (FFC_<FLAG>, upper
# case, dashes as underscores); one that is not a flag of the command its
# container runs is only noted, since ffc ignores it there.
#
# Without FILE it checks deploy/compose/*.y*ml, deploy/k8s/**/*.yaml and
# deploy/README.md. Without --bin (or $FFC_BIN) it builds ffc from this
# checkout into a temporary folder. Needs python3 with PyYAML.
# Exit status: 0 all known, 1 an unknown flag or variable, 2 usage/setup.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${FFC_BIN:-}
files=()
while (($#)); do
	case $1 in
	--bin)
		bin=${2:?--bin needs a path}
		shift 2
		;;
	--bin=*)
		bin=${1#--bin=}
		shift
		;;
	-h | --help)
		sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		files+=("$1")
		shift
		;;
	esac
done

if ! python3 -c 'import yaml' 2>/dev/null; then
	echo "check-flags: needs python3 with PyYAML (pip install pyyaml)" >&2
	exit 2
fi

if [[ -z $bin ]]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# Same build tags as the Makefile (OpenBLAS when present), so the build
	# cache is shared with `make build`; the flags do not depend on them.
	tags=$("$repo/deploy/local/blas.sh" 2>/dev/null || true)
	echo "check-flags: building ffc${tags:+ (-tags $tags)}" >&2
	(cd "$repo" && go build ${tags:+-tags "$tags"} -o "$tmp/ffc" ./cmd/ffc)
	bin=$tmp/ffc
fi
[[ -x $bin ]] || {
	echo "check-flags: $bin is not an executable" >&2
	exit 2
}

if ((${#files[@]} == 0)); then
	shopt -s nullglob globstar
	files=("$repo"/deploy/compose/*.yml "$repo"/deploy/compose/*.yaml "$repo"/deploy/k8s/**/*.yaml)
	[[ -f $repo/deploy/README.md ]] && files+=("$repo/deploy/README.md")
fi

exec python3 - "$bin" "$repo" "${files[@]}" <<'PY'
import os
import re
import shlex
import subprocess
import sys

import yaml

ffc, repo, files = sys.argv[1], sys.argv[2], sys.argv[3:]
errors, notes, checked = [], [], []
_help = {}


def cmd_help(path):
    """(flags, subcommands) of `ffc <path> --help`."""
    if path not in _help:
        p = subprocess.run([ffc, *path, "--help"], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"check-flags: `ffc {' '.join(path)} --help` failed: {p.stderr.strip()}")
        text = p.stdout
        flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", text, re.M))
        subs, in_cmds = set(), False
        for line in text.splitlines():
            if line.startswith("Available Commands:"):
                in_cmds = True
            elif in_cmds and re.match(r"^  \S", line):
                subs.add(line.split()[0])
            elif in_cmds:
                in_cmds = False
        _help[path] = (flags, subs)
    return _help[path]


def all_flags():
    seen, todo = set(), [()]
    while todo:
        path = todo.pop()
        flags, subs = cmd_help(path)
        seen |= flags
        todo += [path + (s,) for s in subs if s not in ("help", "completion")]
    return seen


ALL = all_flags()


def rel(f):
    r = os.path.relpath(f, repo)
    return f if r.startswith("..") else r


def check_argv(where, argv):
    """Checks one ffc invocation (argv without the program); returns its
    command path or None."""
    path, i = (), 0
    while i < len(argv) and not argv[i].startswith("-"):
        if argv[i] not in cmd_help(path)[1]:
            break
        path += (argv[i],)
        i += 1
    if not path:
        errors.append(f"{where}: `ffc {' '.join(argv)}`: no ffc subcommand")
        return None
    flags = cmd_help(path)[0]
    n = 0
    for tok in argv[i:]:
        if tok == "--":
            break
        if tok.startswith("--"):
            name = tok[2:].split("=", 1)[0]
            n += 1
            if name not in flags:
                errors.append(f"{where}: `ffc {' '.join(path)}` has no flag --{name}")
        elif re.match(r"^-[A-Za-z]", tok) and tok != "-h":
            errors.append(f"{where}: `ffc {' '.join(path)}`: unknown short flag {tok}")
    checked.append(f"{where}: ffc {' '.join(path)} ({n} flags)")
    return path


SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "exec", "time"}


def shell_invocations(script):
    """argv lists of the ffc commands in a shell script."""
    out = []
    script = script.replace("\\\n", " ")
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for seg in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(seg, comments=True)
            except ValueError:
                continue
            while words and (words[0] in SHELL_KEYWORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
                words = words[1:]
            if words and (words[0] == "ffc" or words[0].endswith("/ffc")):
                out.append(words[1:])
    return out


def is_shell(argv0):
    return os.path.basename(argv0) in ("sh", "bash", "dash", "ash")


def invocations(entry, args):
    """ffc argv lists run by a container whose image's entrypoint is ffc,
    given its entrypoint override (entry) and arguments (args)."""
    entry, args = list(entry or []), list(args or [])
    full = entry + args if entry else ["ffc"] + args
    if full and (full[0] == "ffc" or full[0].endswith("/ffc")):
        return [full[1:]]
    if full and is_shell(full[0]) and "-c" in full:
        k = full.index("-c")
        if k + 1 < len(full):
            return shell_invocations(full[k + 1])
    return []


def check_env(where, names, paths):
    ignored = []
    for name in sorted(set(names)):
        if not name.startswith("FFC_"):
            continue
        flag = name[4:].lower().replace("_", "-")
        if flag not in ALL:
            errors.append(f"{where}: {name} is not a flag of any ffc command (no --{flag})")
        elif paths and not any(flag in cmd_help(p)[0] for p in paths):
            ignored.append(name)
    if ignored:
        cmds = ", ".join("ffc " + " ".join(p) for p in paths)
        notes.append(f"{where}: not flags of {cmds} (ignored there): {' '.join(ignored)}")


# --------------------------------------------------------------- compose --

VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(v):
    """Compose's variable substitution with every variable unset."""
    if isinstance(v, str):
        def sub(m):
            if m.group(0) == "$$":
                return "$"
            op, default = m.group(2), m.group(3)
            return default if op in (":-", "-") else ""
        return VAR.sub(sub, v)
    if isinstance(v, list):
        return [interpolate(x) for x in v]
    if isinstance(v, dict):
        return {k: interpolate(x) for k, x in v.items()}
    return v


def as_list(v):
    if v is None:
        return []
    if isinstance(v, str):
        return shlex.split(v)
    return [str(x) for x in v]


def env_names(env):
    if isinstance(env, dict):
        return list(env)
    return [str(e).split("=", 1)[0] for e in env or []]


def is_ffc_image(image):
    name = (image or "").split("@")[0].rsplit(":", 1)[0]
    return name == "ffc" or name.endswith("/ffc")


def check_compose(f, doc):
    for svc, spec in (doc.get("services") or {}).items():
        spec = interpolate(spec)
        built = str((spec.get("build") or {}).get("dockerfile", "")).endswith("deploy/Dockerfile") if isinstance(spec.get("build"), dict) else False
        if not (is_ffc_image(spec.get("image")) or built):
            continue
        where = f"{rel(f)}: service {svc}"
        paths = [p for a in invocations(as_list(spec.get("entrypoint")), as_list(spec.get("command"))) if (p := check_argv(where, a))]
        check_env(where, env_names(spec.get("environment")), paths)


# ------------------------------------------------------------ kubernetes --

def pod_specs(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        return [((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}]
    if "template" in spec:
        return [(spec.get("template") or {}).get("spec") or {}]
    return []


def check_k8s(docs):
    keys = {}  # (kind, name) -> keys of ConfigMaps and Secrets
    for f, d in docs:
        if d.get("kind") in ("ConfigMap", "Secret"):
            ks = list((d.get("data") or {})) + list((d.get("stringData") or {}))
            keys[(d["kind"], d["metadata"]["name"])] = ks
            if d["kind"] == "ConfigMap":
                check_env(f"{rel(f)}: ConfigMap {d['metadata']['name']}", ks, [])
    for f, d in docs:
        for ps in pod_specs(d):
            for c in (ps.get("initContainers") or []) + (ps.get("containers") or []):
                if not is_ffc_image(c.get("image")):
                    continue
                where = f"{rel(f)}: {d.get('kind')} {d['metadata']['name']} container {c.get('name')}"
                paths = [p for a in invocations(c.get("command"), c.get("args")) if (p := check_argv(where, [str(x) for x in a]))]
                names = [e["name"] for e in c.get("env") or []]
                for src in c.get("envFrom") or []:
                    for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                        if ref in src:
                            name = src[ref]["name"]
                            if (kind, name) not in keys:
                                notes.append(f"{where}: envFrom {kind} {name} is not in the checked files")
                            names += [src.get("prefix", "") + k for k in keys.get((kind, name), [])]
                check_env(where, names, paths)


# --------------------------------------------------------------- markdown --

def check_markdown(f):
    in_code = False
    for n, line in enumerate(open(f, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            for argv in shell_invocations(re.sub(r"^\s*\$ ", "", line)):
                check_argv(f"{rel(f)}:{n}", argv)


k8s_docs = []
for f in files:
    if f.endswith(".md"):
        check_markdown(f)
        continue
    with open(f, encoding="utf-8") as fh:
        try:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        except yaml.YAMLError as e:
            errors.append(f"{rel(f)}: YAML: {e}")
            continue
    for d in docs:
        if isinstance(d, dict) and "services" in d:
            check_compose(f, d)
        elif isinstance(d, dict) and "kind" in d and "apiVersion" in d:
            k8s_docs.append((f, d))
check_k8s(k8s_docs)

for c in checked:
    print("ok    " + c)
for n in notes:
    print("note  " + n)
for e in errors:
    print("ERROR " + e)
print(f"check-flags: {len(checked)} ffc invocations in {len(files)} files, {len(errors)} unknown, {len(notes)} notes")
sys.exit(1 if errors else 0)
PY
