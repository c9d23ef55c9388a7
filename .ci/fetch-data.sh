#!/usr/bin/env bash
# Fetch the real Fashion-MNIST when it is missing: Debian's package through apt when apt is usable
# (root, or passwordless sudo), otherwise Keras' own download into the Keras cache.
set -euo pipefail
PY=${PY:-.venv/bin/python}
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "fetching Fashion-MNIST: apt-get install dataset-fashion-mnist"
    $SUDO apt-get update -qq || true
    if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; then
      exit 0
    fi
  fi
fi
echo "fetching Fashion-MNIST: Keras download into ~/.keras/datasets"
"$PY" -c "import keras; keras.datasets.fashion_mnist.load_data()"
