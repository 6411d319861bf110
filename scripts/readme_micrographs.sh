#!/usr/bin/env bash
# The README's micrograph commands ("From your micrographs to denoised micrographs"), run as
# written, but for the install line, in a fresh folder: generated 4096 x 4096 micrographs in
# micrographs/ and one held out in micrographs/val/ stand in for a user's.
#   bash scripts/readme_micrographs.sh [WORK_DIR]
#   (PYTHON: the interpreter, default python3; SIZE: the micrographs' side, default 4096)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
SIZE=${SIZE:-4096}
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK" && cd "$WORK"
if ! command -v cudnn-denoise >/dev/null; then  # not installed (the GPU machine's PYTHONPATH copy)
    cudnn-denoise() { "$PYTHON" -m cudnn_denoise "$@"; }
fi
"$PYTHON" "$ROOT/tests/micrograph_files.py" micrographs --count 2 --size "$SIZE" >/dev/null
"$PYTHON" "$ROOT/tests/micrograph_files.py" micrographs/val --count 1 --first 2 --size "$SIZE" >/dev/null
commands=$("$PYTHON" - "$ROOT/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = text[text.index("## From your micrographs"):]
block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
print("\n".join(line for line in block.splitlines() if line.startswith("cudnn-denoise ")))
PY
)
while IFS= read -r line; do
    echo "\$ $line"
    eval "$line"
done <<< "$commands"
