#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing.
set -euo pipefail
pkgs=(chromium nodejs npm python3 python3-regex)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
# node/npm may come from elsewhere (nodesource, the machine image): accept any on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${need[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done; need=("${tmp[@]}")
fi
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
