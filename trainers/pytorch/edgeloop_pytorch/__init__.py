"""edgeloop's reference PyTorch training job (docs/trainer-pytorch.md).

The package is the job's library; train.py beside it is the command. It follows the training job
contract of docs/job-backends.md: EDGELOOP_* environment variables in, model.onnx and
metrics.json (plus checkpoint.pt) out.
"""
