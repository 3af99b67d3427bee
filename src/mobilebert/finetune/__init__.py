"""Fine-tuning as a library: what ``mobilebert finetune / evaluate / predict`` (recipes/) are built from.

- ``load``: the task model from any checkpoint (``mobilebert.load.load_model``), a fine-tuned folder, a teacher.
- ``module``: ``FinetuneModule`` (task loss, task distillation incl. intermediate transfer) and ``FinetuneTask``,
  the object ``train.trainer.fit`` trains and evaluates every epoch.
- ``evaluate``: one ``run_model`` for any callable model (PyTorch, ``deploy.onnx.OnnxModel``, ...) and the one
  scoring of GLUE, SQuAD (decoding + metrics written once) and the user's own tasks (per-class reports,
  multi-label thresholds, entity scores).
- ``predict``: prediction rows (labels with probabilities, scores, answers) for any callable model.

Data (examples or the user's files -> ids -> batches) lives below, in ``data/finetuning.py``.
"""
