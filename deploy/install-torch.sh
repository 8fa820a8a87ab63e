#!/bin/sh
# Install the build of torch that constraints.txt pins, for `make install` and the Dockerfile:
#
#   sh deploy/install-torch.sh cpu|cuda|pypi [PYTHON]
#
# cpu   the CPU-only build (about 900 MB installed, with sympy and the rest): a CPU wheel that
#       pip finds without an index (its find-links: a wheelhouse on an offline machine, say),
#       else PyTorch's CPU index
# cuda  the CUDA 12.8 build from PyTorch's index (several GB with the NVIDIA libraries it needs)
# pypi  whatever pip's own index serves (from PyPI: the CUDA build on Linux x86_64)
#
# TORCH_INDEX=URL replaces PyTorch's index for cpu or cuda (another CUDA version, a mirror).
# A torch of the pinned version and the asked-for kind that is already installed is kept.
set -eu

kind=${1:-cpu}
python=${2:-python}
here=$(dirname "$0")
pin=$(grep -E '^torch==' "$here/../constraints.txt")
version=${pin#torch==}

case $kind in
cpu) index=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu} ;;
cuda) index=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128} ;;
pypi) index= ;;
*)
    echo "install-torch: unknown build '$kind' (cpu, cuda or pypi)" >&2
    exit 2
    ;;
esac

# What is installed now: "VERSION cpu|cuda", or nothing.
installed=$("$python" -W ignore -c 'import torch
print(torch.__version__.split("+")[0], "cpu" if torch.version.cuda is None else "cuda")' \
    2>/dev/null || true)
if [ "$installed" = "$version $kind" ] || { [ "$kind" = pypi ] && [ "${installed%% *}" = "$version" ]; }; then
    echo "torch $installed build already installed"
    exit 0
fi
if [ -n "$installed" ]; then
    "$python" -m pip uninstall --quiet --yes torch
fi

pip_install() {
    "$python" -m pip install --quiet --disable-pip-version-check "$@"
}
if [ "$kind" = cpu ] && pip_install --dry-run --no-deps --no-index "torch==$version+cpu" 2>/dev/null; then
    pip_install "torch==$version+cpu"
    source="a wheel pip found without an index"
elif [ -n "$index" ]; then
    pip_install --index-url "$index" "$pin"
    source=$index
else
    pip_install "$pin"
    source="pip's own index"
fi
"$python" -W ignore -c 'import torch
print("installed torch", torch.__version__, "(CUDA " + torch.version.cuda + ")" if torch.version.cuda else "(CPU only)", end=" ")'
echo "from $source"
