#!/usr/bin/env bash
# The checks that need a GPU, in one call of the device tool (bench/README.md, "Training on a
# GPU"): the training code paths (fine-tune, teacher, every fitting strategy, the job pipeline)
# run with BUDGETPRUNE_TRAIN_DEVICE=cuda, then bench/train_speed.py times a training step.
# That machine has torch, timm and onnxruntime but not the service's light packages: they travel
# as wheels in .whl/ (py3.12), made with the `pip download` line in bench/README.md.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BUDGETPRUNE_TRAIN_DEVICE=cuda
out=${OUT:-/tmp}
nvidia-smi -L
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
timeout 330 python3 -m pytest -q -ra -p no:cacheprovider \
  tests/vitprune/test_train.py tests/vitprune/test_teacher.py tests/vitprune/strategies \
  tests/latency_tables/test_torch_expect.py tests/worker/test_pipeline.py 2>&1 | tee "$out/pytest_gpu.log" | tail -25
python3 bench/train_speed.py --batch-sizes 64 128 512 --out "$out/train_speed_gpu.json"
