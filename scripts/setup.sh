#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for development and tests: system libraries for Qt
# under Xvfb, a virtual environment in .venv, PyTorch and the project with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 \
    libxcb-render-util0 libxcb-shape0 libxcb-cursor0 libxkbcommon-x11-0 \
    libgl1 libegl1 libdbus-1-3 libfontconfig1 >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first: on our machines this exact pair is installed from local disk.
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" \
  || .venv/bin/pip install -q torch torchvision
.venv/bin/pip install -q -e ".[testing]"
echo "environment ready: .venv"
