"""``mobilebert build``: labelled data in, an app-ready distilled model out, in one resumable command.

Reads top to bottom: ``BuildConfig`` (every default the pipeline uses, each overridable) -> ``mobilebert.build``
runs the stages (teacher, student, evaluate, app, report) -> the paths printed. The pipeline lives in
``mobilebert/build.py``; this file is the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass
class BuildConfig:
    """Every setting of ``mobilebert build`` (flags, YAML keys and ``key=value`` overrides alike)."""

    out: str = option(help="output folder: teacher/, student/, evaluate/, app/ (what ships), report.md",
                      output="run", affects_result=False)
    task: str = option("text-classification", help="text-classification, regression, token-classification (with "
                       "--train/--validation files), or a GLUE task name with --data")
    train: str | None = option(None, help="training file (.csv, .tsv, .jsonl, .json, .parquet, a save_to_disk "
                               "folder; CoNLL or JSONL for token-classification)", path="exists")
    validation: str | None = option(None, help="validation file, same format: scores, the kept epoch and the "
                                    "int8 decision come from it", path="exists")
    test: str | None = option(None, help="optional test file, same format", path="exists")
    data: str | None = option(None, help="GLUE root or task folder (GLUE task names only, instead of --train)",
                              path="exists")
    text_column: str | None = option(None, help="column of the text (default: detected: text, sentence, ...)")
    text_pair_column: str | None = option(None, help="column of the second text of a pair (default: none)")
    label_column: str | None = option(None, help="column of the label (default: detected: label, labels)")
    label_separator: str | None = option(None, help="multi-label: separator of the labels in one cell")
    multi_label: bool = option(False, help="several labels per row (a JSON list, or split by --label-separator)")
    teacher: str | None = option(None, help="teacher checkpoint to fine-tune (default: all-MiniLM-L6-v2 as make "
                                 "installs it); same vocabulary as the student", path="model")
    student: str | None = option(None, help="student checkpoint to distil into (default: the shipped "
                                 "models/mobilebert-minilm)", path="model")
    teacher_epochs: int | None = option(None, help="teacher fine-tuning epochs, the best kept (default: about "
                                        "40,000 examples' worth, 1 to 5 epochs)", at_least=1)
    teacher_lr: float = option(1e-4, help="teacher peak learning rate", above=0)
    student_epochs: int | None = option(None, help="student distillation epochs, the best kept (default: as the "
                                        "teacher's)", at_least=1)
    student_lr: float = option(3e-4, help="student peak learning rate", above=0)
    dropout: float | None = option(0.1, help="student dropout (hidden, attention, classifier; null: the "
                                   "checkpoint's own)", at_least=0, below=1)
    batch_size: int = option(32, help="examples per step, both stages", at_least=1)
    max_seq_length: int | None = option(None, help="tokens per example (default: the 95th percentile of the "
                                        "training rows' token counts, rounded up to a multiple of 16, at most 128)",
                                        at_least=8)
    kd_alpha: float = option(0.5, help="student: weight of the label loss; 1 - alpha goes to the teacher's soft "
                             "labels", at_least=0, at_most=1)
    kd_temperature: float = option(2.0, help="student: softmax temperature of the soft labels", above=0)
    kd_hidden: float = option(1.0, help="student: weight of hidden-state transfer from the teacher (0: off)",
                              at_least=0)
    kd_attention: float = option(1.0, help="student: weight of attention-map transfer (0: off)", at_least=0)
    int8_tolerance: float = option(1.0, help="ship int8 only when its validation score is within this many "
                                   "points (x100) of fp32", at_least=0)
    mediapipe: bool = option(True, help="write the MediaPipe .tflite (text classification; needs litert-torch "
                             "and mediapipe)")
    seed: int = option(42, help="seed of both training stages")
    max_train_examples: int | None = option(None, help="train on a fixed random subset of this size", at_least=1)
    max_eval_examples: int | None = option(None, help="score on the first N validation rows only", at_least=1)
    bench_repeats: int = option(20, help="timed calls per model and format", at_least=1, affects_result=False)
    threads: int = option(2, help="CPU threads of the latency measurement", at_least=1, affects_result=False)
    eval_batch_size: int = option(64, help="examples per forward pass when scoring", at_least=1,
                                  affects_result=False)
    resume: bool = option(False, help="continue the stage that stopped (done stages are skipped; same settings)",
                          affects_result=False)
    device: str | None = option(None, help="e.g. cpu, cuda:1 (default: CUDA when available)", affects_result=False)

    def check(self) -> None:
        """Relations between settings (each field's own range is checked from its metadata)."""
        files = self.train is not None or self.validation is not None
        if files and self.data is not None:
            raise ValueError("give --train/--validation files or --data (a GLUE folder), not both")
        if files and (self.train is None or self.validation is None):
            raise ValueError("--train and --validation go together: the validation file scores every model and "
                             "decides int8")
        if not files and self.data is None:
            raise ValueError("no data: give --train FILE --validation FILE (or --data for a GLUE task)")
        if self.task == "token-classification" and self.text_pair_column:
            raise ValueError("--text-pair-column: token classification tags single sentences")
        if (self.label_separator or self.multi_label) and self.task != "text-classification":
            raise ValueError("--multi-label / --label-separator: only with --task text-classification")


def main(cfg: BuildConfig) -> int:
    """``mobilebert build``: run (or resume) every stage, then say where the app files and the report are."""
    from ..build import run_build

    done = run_build(cfg)
    for kind, path in done["app"]["files"].items():
        print(f"{kind}: {path}")
    mp = done["app"]["mediapipe"]
    if mp.get("note"):
        print(f"note: {mp['note']}")
    print(f"int8: {done['evaluate']['int8_reason']}")
    print(f"report: {done['report']['report']}")
    return 0

