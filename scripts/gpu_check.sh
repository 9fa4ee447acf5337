#!/usr/bin/env bash
# The CUDA check run on a lent GPU machine (no internet there; torch preinstalled): the trainer
# (bf16 autocast, LoRA, resume, the feature-store path, WiSE), the losses, the Hugging Face
# CLAP backend and embedding, with --device auto resolving to cuda. Wheels of what the machine
# lacks travel in .whl/ (see /work/.library/device/README.md); the log goes to $OUT if set.
set -uo pipefail
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
log="${OUT:-/tmp}/gpu_check.log"
nvidia-smi -L | tee "$log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$log"
python3 -c "
from claptune.train import TrainConfig
from claptune.train.loop import _device
print('fit device for device=auto:', _device(TrainConfig()))" | tee -a "$log"
timeout "${GPU_CHECK_TIMEOUT:-400}" python3 -m pytest -q -p no:cacheprovider \
  tests/test_train.py tests/test_losses.py tests/test_hf_clap.py tests/test_embed.py 2>&1 | tee -a "$log"
# embedding on the GPU: clips/s by precision (float32, tf32, bf16 autocast) and batch size, the
# vectors' distance from float32, pinned host memory (bench/bench_gpu_embed.py)
timeout "${GPU_EMBED_TIMEOUT:-300}" python3 bench/bench_gpu_embed.py --clips 256 2>&1 | tee -a "$log"
