#!/usr/bin/env bash
# Rebuilds the project's models. Usage:
#
#   tools/model/build.sh model                   # corpus → tokenizer → training → export → self-test
#   tools/model/build.sh bench-model GPT2DIR OUT # GPT-2-small-shaped random model with GPT-2's tokenizer
#
# Environment: MODEL_WORK_DIR (default tools/model/out: corpus, token streams, checkpoint),
# MODEL_DIR (default inference/model/default), TRAIN_ARGS (extra train.py flags, e.g.
# "--device cpu --threads 2"), ORT_NODE_DIR (a directory with node_modules/onnxruntime-node:
# the self-test then also runs model.onnx through ONNX Runtime).
# Missing Debian packages are installed with apt-get (as root, or through sudo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py=/usr/bin/python3

ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	echo "build.sh: installing ${missing[*]}" >&2
	if [[ $(id -u) -eq 0 ]]; then
		apt-get install -y --no-install-recommends "${missing[@]}"
	elif command -v sudo >/dev/null; then
		sudo apt-get install -y --no-install-recommends "${missing[@]}"
	else
		echo "build.sh: missing Debian packages: ${missing[*]} (install them as root)" >&2
		exit 1
	fi
}

python_packages=(python3-torch python3-onnx python3-numpy python3-regex)

build_model() {
	local work="${MODEL_WORK_DIR:-$root/tools/model/out}"
	local dest="${MODEL_DIR:-$root/inference/model/default}"
	ensure_packages "${python_packages[@]}" wordnet-base
	"$py" "$here/corpus.py" --out "$work"
	"$py" "$here/bpe.py" --corpus "$work/train.txt" --vocab-size 4096 --out "$work/tokenizer.json"
	# shellcheck disable=SC2086 # TRAIN_ARGS is a list of flags
	"$py" "$here/train.py" --data "$work" ${TRAIN_ARGS:-}
	"$py" "$here/export.py" --checkpoint "$work" --out "$dest"
	if [[ -n ${ORT_NODE_DIR:-} ]]; then
		"$py" "$here/selftest.py" --checkpoint "$work" --onnx "$dest/model.onnx" --ort-node "$ORT_NODE_DIR"
	else
		"$py" "$here/selftest.py" --checkpoint "$work"
	fi
}

build_bench_model() {
	local gpt2dir="$1" out="$2"
	ensure_packages "${python_packages[@]}"
	"$py" "$here/benchmodel.py" --gpt2-dir "$gpt2dir" --out "$out"
}

case "${1:-model}" in
model) build_model ;;
bench-model)
	[[ $# -eq 3 ]] || { echo "usage: $0 bench-model GPT2_VOCAB_DIR OUT_DIR" >&2; exit 2; }
	build_bench_model "$2" "$3"
	;;
*) echo "usage: $0 [model | bench-model GPT2_VOCAB_DIR OUT_DIR]" >&2; exit 2 ;;
esac
