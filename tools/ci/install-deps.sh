#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing (apt-get; root or sudo).
#   tools/ci/install-deps.sh            everything the test suite uses
#   tools/ci/install-deps.sh npm        just npm (make run fetches ONNX Runtime with it)
#   tools/ci/install-deps.sh gcc libc6-dev   a C toolchain (cgo: ONNX Runtime and NVML bindings, -race)
set -euo pipefail
if [ $# -gt 0 ]; then pkgs=("$@"); else pkgs=(gcc libc6-dev chromium nodejs npm python3 python3-regex); fi
need=()
for p in "${pkgs[@]}"; do
  case $p in
    nodejs) command -v node >/dev/null && continue ;; # node/npm may come from elsewhere (the image, nodesource)
    npm) command -v npm >/dev/null && continue ;;
    gcc) command -v gcc >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
