#!/usr/bin/env bash
# Sets up and runs the official PyTorch (Hugging Face) DeepSeek-OCR code on the CPU, to time it
# side by side with dsocr on the same machine and the same random full-size checkpoint.
#
# Usage:
#   scripts/bench-torch.sh setup      [--venv DIR]
#   scripts/bench-torch.sh checkpoint --out DIR [--venv DIR]
#   scripts/bench-torch.sh run        --model-dir DIR --dtype f32|bf16 [--mode base|gundam]
#                                     [--max-new-tokens N] [--threads N] [--json OUT] [--venv DIR]
#
#   setup       creates a venv (default $HOME/.cache/deepseek-ocr/refenv) with transformers 4.46.3,
#               torch and the reference's other dependencies (~6 GB, a few minutes); idempotent.
#               Installs /usr/bin/time (Debian package `time`) when it is missing.
#               DSOCR_TORCH_INDEX_URL, if set, is passed to pip as --index-url for torch and
#               torchvision (e.g. a CPU-only wheel index); by default the default index is used.
#   checkpoint  writes the random-weight checkpoint (~6.7 GB, ~60 s) and the test page
#               DIR/page.png; parts that already exist are skipped.
#   run         runs the reference under /usr/bin/time -v (base: --base-size 1024 --image-size 1024
#               --crop-mode false; gundam: --image-size 640 --crop-mode true; default 128 new
#               tokens) and prints wall seconds, peak RSS and the stage timings.
#
# Environment:
#   DSOCR_HF_GIT       required: a git directory (bare is fine) of the reference's Hugging Face
#                      model files (modeling_deepseekocr.py, config.json, ...).
#   DSOCR_SHARED_DIR   the shared dir holding bench/ and spec/ (default: ../shared beside the repo).
#   PYTHON             the Python used to create the venv (default: python3).
#
# The reference scripts in $DSOCR_SHARED_DIR/bench belong to the measuring setup: they are called
# in place, never copied into this repository.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${DSOCR_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}"
bench="$shared/bench"
venv="$HOME/.cache/deepseek-ocr/refenv"
ckpt_name="model-00001-of-000001.safetensors"

die() { echo "error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

need_shared() {
    [ -f "$bench/run_reference.py" ] ||
        die "reference scripts not found in $bench (set DSOCR_SHARED_DIR to the shared dir)"
}
need_hf_git() {
    [ -n "${DSOCR_HF_GIT:-}" ] ||
        die "DSOCR_HF_GIT is not set: point it at a git directory of the reference's Hugging Face files (e.g. a bare clone of the model repository)"
    git -C "$DSOCR_HF_GIT" cat-file -e HEAD:modeling_deepseekocr.py 2>/dev/null ||
        die "DSOCR_HF_GIT=$DSOCR_HF_GIT is not a git directory with modeling_deepseekocr.py at HEAD"
}
need_venv() {
    [ -x "$venv/bin/python" ] || die "no venv at $venv: run 'scripts/bench-torch.sh setup --venv $venv' first"
}
need_time() {
    [ -x /usr/bin/time ] || die "/usr/bin/time not found: install the Debian package 'time' (or run setup)"
}

PKGS=("transformers==4.46.3" "tokenizers<0.21" safetensors numpy pillow einops addict easydict)
CHECK_PY='
import importlib, sys
for m in ["transformers", "tokenizers", "safetensors", "numpy", "PIL", "einops", "addict",
          "easydict", "torch", "torchvision"]:
    importlib.import_module(m)
import transformers, tokenizers, torch
assert transformers.__version__ == "4.46.3", transformers.__version__
assert tuple(int(x) for x in tokenizers.__version__.split(".")[:2]) < (0, 21), tokenizers.__version__
print(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
'

cmd_setup() {
    if [ ! -x /usr/bin/time ]; then
        command -v apt-get >/dev/null || die "/usr/bin/time missing and no apt-get: install GNU time"
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq && $sudo apt-get install -y -qq time
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$CHECK_PY" 2>/dev/null; then
        echo "reference venv already set up: $venv"
        return 0
    fi
    py="${PYTHON:-python3}"
    command -v "$py" >/dev/null || die "$py not found"
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    if [ -n "${DSOCR_TORCH_INDEX_URL:-}" ]; then
        "$venv/bin/pip" install --index-url "$DSOCR_TORCH_INDEX_URL" torch torchvision
        "$venv/bin/pip" install "${PKGS[@]}"
    else
        "$venv/bin/pip" install "${PKGS[@]}" torch torchvision
    fi
    "$venv/bin/python" -c "$CHECK_PY"
    echo "reference venv ready: $venv"
}

cmd_checkpoint() {
    local out="$1"
    need_shared; need_hf_git; need_venv
    mkdir -p "$out"
    local f have=1
    for f in "$ckpt_name" model.safetensors.index.json config.json tokenizer.json \
             tokenizer_config.json special_tokens_map.json; do
        [ -s "$out/$f" ] || have=0
    done
    if [ "$have" -eq 1 ]; then
        echo "checkpoint already in $out"
    else
        "$venv/bin/python" "$bench/make_random_checkpoint.py" --out "$out"
    fi
    if [ -s "$out/page.png" ]; then
        echo "test page already at $out/page.png"
    else
        "$venv/bin/python" "$bench/make_test_page.py" --out "$out/page.png"
    fi
    du -sh "$out"
}

cmd_run() {
    local model_dir="$1" dtype="$2" mode="$3" ntok="$4" json="$5" threads="$6"
    need_shared; need_hf_git; need_venv; need_time
    [ -s "$model_dir/config.json" ] || die "no checkpoint in $model_dir (run 'checkpoint --out $model_dir')"
    local modeargs
    case "$mode" in
        base) modeargs=(--base-size 1024 --image-size 1024 --crop-mode false) ;;
        gundam) modeargs=(--image-size 640 --crop-mode true) ;;
        *) die "--mode must be base or gundam" ;;
    esac
    case "$dtype" in f32|bf16) ;; *) die "--dtype must be f32 or bf16" ;; esac
    tmp="$(mktemp -d)"  # global: the EXIT trap runs after this function has returned
    trap 'rm -rf "${tmp:-}"' EXIT
    [ -n "$json" ] || json="$tmp/ref.json"
    local extra=()
    [ -z "$threads" ] || extra=(--threads "$threads")
    local rc=0
    /usr/bin/time -v -o "$tmp/time.txt" "$venv/bin/python" "$bench/run_reference.py" \
        --model-dir "$model_dir" --dtype "$dtype" "${modeargs[@]}" \
        --max-new-tokens "$ntok" --json "$json" "${extra[@]}" || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$tmp/time.txt" >&2 || true
        die "run_reference.py failed (exit $rc)"
    fi
    "$venv/bin/python" - "$tmp/time.txt" "$json" "$mode" <<'EOF'
import json, re, sys
tv, js, mode = sys.argv[1:4]
t = open(tv).read()
m = re.search(r"Elapsed \(wall clock\) time.*?: (?:(\d+):)?(\d+):([\d.]+)", t)
wall = (int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))) if m else float("nan")
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 2**20
r = json.load(open(js))
v = r["vision_detail_s"]
print(f"== torch reference {r['dtype']} {mode}, threads {r['threads']}, torch {r['torch']}, "
      f"{r['prompt_tokens']} prompt + {r['generated_tokens']} new tokens")
print(f"   process {wall:.1f} s, peak RSS {rss:.2f} GiB (time -v)")
print(f"   load {r['load_s']:.2f}  preproc {r['preproc_s']:.2f}  vision {r['vision_s']:.2f} "
      f"(sam {v['sam']:.2f} / clip {v['clip']:.2f} / proj {v['proj']:.2f})  "
      f"prefill {r['prefill_s']:.2f}  decode {r['decode_tok_s']:.2f} tok/s  [s]")
print(f"   json: {js}")
EOF
}

[ $# -ge 1 ] || usage
sub="$1"; shift
out="" model_dir="" dtype="" mode="base" ntok=128 json="" threads=""
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="${2:?--venv needs a DIR}"; shift 2 ;;
        --out) out="${2:?--out needs a DIR}"; shift 2 ;;
        --model-dir) model_dir="${2:?--model-dir needs a DIR}"; shift 2 ;;
        --dtype) dtype="${2:?--dtype needs f32|bf16}"; shift 2 ;;
        --mode) mode="${2:?--mode needs base|gundam}"; shift 2 ;;
        --max-new-tokens) ntok="${2:?--max-new-tokens needs N}"; shift 2 ;;
        --threads) threads="${2:?--threads needs N}"; shift 2 ;;
        --json) json="${2:?--json needs a path}"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "error: unknown argument: $1" >&2; usage ;;
    esac
done

case "$sub" in
    setup) cmd_setup ;;
    checkpoint) [ -n "$out" ] || die "checkpoint needs --out DIR"; cmd_checkpoint "$out" ;;
    run)
        [ -n "$model_dir" ] || die "run needs --model-dir DIR"
        [ -n "$dtype" ] || die "run needs --dtype f32|bf16"
        cmd_run "$model_dir" "$dtype" "$mode" "$ntok" "$json" "$threads" ;;
    -h|--help|help) usage 0 ;;
    *) echo "error: unknown command: $sub" >&2; usage ;;
esac
