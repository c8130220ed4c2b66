#!/usr/bin/env bash
# Lethe's models against LightGBM and `implicit`, side by side, on the same files and folds.
#
#   tests/ml/run.sh [extra `lethe-bench ml` flags, e.g. --als-factors 32]
#
# 1. A Python venv in target/ml-venv with lightgbm, implicit, numpy, scipy and pandas (from PyPI).
# 2. The Open Bandit Dataset sample, taken from the `obp` source package on PyPI (obp/dataset/obd/
#    {random,bts}/all/{all.csv,item_context.csv}) into target/ml-data/obd. The data is by Yuta Saito,
#    Shunsuke Aihara, Megumi Matsutani and Yusuke Narita, "Open Bandit Dataset and Pipeline: Towards
#    Realistic and Reproducible Off-Policy Evaluation" (2020, arXiv:2008.07146), ZOZO, Inc., licensed
#    CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). It is downloaded, never committed.
# 3. `lethe-bench ml` (release build) writes the synthetic CSVs, converts OBD to features, trains and
#    times Lethe's models and writes target/ml-data/synthetic/lethe-results.json.
# 4. tests/ml/compare.py trains LightGBM and implicit on the same files and prints the combined table.
# 5. `lethe-bench obd` replays the OBD random-policy log through Lethe and estimates its decision policy
#    off-policy beside the logged random and Bernoulli Thompson Sampling policies.
#
# Everything lands under target/ (git-ignored). Nothing here reads ../shared.
set -euo pipefail

cd "$(dirname "$0")/../.."
VENV=target/ml-venv
DATA=target/ml-data
OBP_VERSION=0.5.7 # its sdist ships obd/random/all/all.csv and obd/bts/all/all.csv (checked below)
POLICIES=(random bts)
export OPENBLAS_NUM_THREADS=1 # implicit warns (and slows down) when OpenBLAS runs its own threads

# --- 1. venv ---------------------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "python3 lacks venv/ensurepip; installing python3-venv" >&2
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq && apt-get install -y -qq python3-venv
        else
            sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv
        fi
    fi
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import lightgbm, implicit, numpy, scipy, pandas' 2>/dev/null; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q lightgbm implicit numpy scipy pandas
fi

# --- 2. Open Bandit Dataset sample ------------------------------------------------------------------
have_obd() {
    local p
    for p in "${POLICIES[@]}"; do
        [[ -s $DATA/obd/$p/all/all.csv && -s $DATA/obd/$p/all/item_context.csv ]] || return 1
    done
}

# Copies obd/<policy>/all/{all.csv,item_context.csv} out of an sdist (.tar.gz) or wheel (.whl) if it
# holds all of them; fails (and copies nothing) otherwise.
extract_obd() {
    "$VENV/bin/python" - "$1" "$DATA/obd" "${POLICIES[@]}" <<'EOF'
import shutil, sys, tarfile, zipfile
from pathlib import Path

archive, dest, policies = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
wanted = [f"obp/dataset/obd/{p}/all/{name}" for p in policies for name in ("all.csv", "item_context.csv")]
if archive.name.endswith(".tar.gz"):
    with tarfile.open(archive) as t:
        names = {m.name.split("/", 1)[1]: m for m in t.getmembers() if "/" in m.name and m.isfile()}
        missing = [w for w in wanted if w not in names]
        if missing:
            sys.exit(f"{archive.name} lacks {missing}")
        read = lambda w: t.extractfile(names[w]).read()
        payload = {w: read(w) for w in wanted}
else:
    with zipfile.ZipFile(archive) as z:
        missing = [w for w in wanted if w not in z.namelist()]
        if missing:
            sys.exit(f"{archive.name} lacks {missing}")
        payload = {w: z.read(w) for w in wanted}
for w, data in payload.items():
    out = dest / w.removeprefix("obp/dataset/obd/")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    rows = data.count(b"\n") - 1
    print(f"  {out} ({rows} rows)")
EOF
}

OBD_FLAGS=()
if ! have_obd; then
    mkdir -p "$DATA/download"
    echo "fetching the Open Bandit Dataset sample from the obp $OBP_VERSION source package" >&2
    # obp $OBP_VERSION declares Python < 3.11; nothing is installed, so the marker is ignored.
    if "$VENV/bin/pip" download -q "obp==$OBP_VERSION" --no-deps --no-binary :all: --ignore-requires-python \
        -d "$DATA/download" && extract_obd "$DATA/download/obp-$OBP_VERSION.tar.gz"; then
        :
    elif "$VENV/bin/pip" download -q "obp==$OBP_VERSION" --no-deps --only-binary :all: --ignore-requires-python \
        -d "$DATA/download" && extract_obd "$(ls "$DATA"/download/obp-"$OBP_VERSION"-*.whl | head -n1)"; then
        echo "(the sdist lacked the files; took them from the wheel)" >&2
    else
        echo "WARNING: neither the obp $OBP_VERSION sdist nor its wheel holds the OBD sample; skipping OBD" >&2
    fi
    if have_obd; then
        cat >"$DATA/obd/NOTICE" <<'EOF'
Open Bandit Dataset (small sample shipped in the obp package), ZOZO, Inc.
Saito, Aihara, Matsutani, Narita (2020), "Open Bandit Dataset and Pipeline: Towards Realistic and
Reproducible Off-Policy Evaluation", arXiv:2008.07146. Licensed CC BY 4.0.
EOF
    fi
fi
if have_obd; then
    OBD_FLAGS=(--obd "$DATA/obd")
fi

# --- 3. Lethe ---------------------------------------------------------------------------------------
mkdir -p "$DATA"
cargo run --release -p lethe-bench -- ml --export-dir "$DATA/synthetic" "${OBD_FLAGS[@]}" "$@" \
    | tee "$DATA/lethe-bench-ml.txt"

# --- 4. LightGBM and implicit, combined table ------------------------------------------------------
echo
echo "################ combined table ################"
"$VENV/bin/python" tests/ml/compare.py "$DATA/synthetic/lethe-results.json" | tee "$DATA/compare.txt"

# --- 5. The Open Bandit Dataset through Lethe's decisions, evaluated off-policy ---------------------
if have_obd; then
    echo
    echo "################ Lethe's policy on the Open Bandit Dataset sample (off-policy) ################"
    cargo run --release -p lethe-bench -- obd --data "$DATA/obd" | tee "$DATA/obd-ope.txt"
fi
