"""Export a checkpoint after a parity check against PyTorch (``mobilebert export``): ONNX (+ int8), ExecuTorch,
LiteRT, or a MediaPipe text model that apps feed raw text."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option

FORMATS = ("onnx", "openvino", "executorch", "litert", "mediapipe")


@dataclass
class ExportConfig:
    model_dir: str = option(help="checkpoint folder (config.json + model.safetensors)", positional=True,
                            path="model")
    out: str = option(help="output folder (onnx) or file (.pte / .tflite); must not exist unless --overwrite; "
                      "written atomically", positional=True, output="file")
    format: str = option("onnx", help="onnx (ONNX Runtime), openvino (OpenVINO IR, x86 servers; `pip install "
                         "openvino nncf`), executorch (XNNPACK), litert or mediapipe (LiteRT + tokenizer metadata; "
                         "needs `pip install executorch` / `pip install litert-torch` / `pip install litert-torch "
                         "mediapipe`)", choices=FORMATS)
    int8: bool = option(False, help="int8 dynamic quantization, per-channel weights")
    seq_len: int = option(128, help="executorch/litert/mediapipe: the fixed sequence length (the app right-pads)",
                          at_least=1)
    precision: str = option("f32", help="openvino: the inference precision the IR runs at (bf16 where the CPU has "
                            "it natively; elsewhere OpenVINO runs f32)", choices=("f32", "bf16"))
    calibration: str | None = option(None, help="openvino --int8: texts to calibrate on, one per line (default: the "
                                     "bundled samples)", path="text")
    labelled: str | None = option(None, help="openvino: a labelled set (GLUE TSV layout of --task) every written "
                                  "file must score within 1 point of PyTorch on", path="exists")
    task: str = option("sst2", help="openvino: the task of --labelled")
    labels: str | None = option(None, help="mediapipe classifier: comma-separated class names in id order "
                                "(default: the checkpoint's id2label; GLUE tasks get readable names, e.g. "
                                "negative,positive)")

    def check(self) -> None:
        if self.labels and self.format != "mediapipe":
            raise ValueError(f"--labels: only --format mediapipe writes class names (got --format {self.format})")
        if (self.calibration or self.labelled or self.precision != "f32") and self.format != "openvino":
            raise ValueError(f"--precision, --calibration and --labelled are --format openvino settings (got --format "
                             f"{self.format})")


def main(cfg: ExportConfig, overwrite: bool = True) -> int:
    """Run the export; the CLI has already applied the rule for an existing ``out`` (so ``overwrite``)."""
    from ..deploy.onnx import ExportError, export_checkpoint
    from ..load import load_model

    try:
        if cfg.format == "mediapipe":
            from ..deploy.mediapipe import export_mediapipe

            r = export_mediapipe(cfg.model_dir, cfg.out, int8=cfg.int8, seq_len=cfg.seq_len, overwrite=overwrite,
                                 labels=cfg.labels.split(",") if cfg.labels else None)
            what = f"TextClassifier, labels {', '.join(r.labels)}" if r.labels else "TextEmbedder"
            print(f"{r.path}: {r.path.stat().st_size / 2**20:.1f} MB, {what}, seq {cfg.seq_len}, "
                  f"{'int8' if cfg.int8 else 'fp32'}, MediaPipe on raw text matches PyTorch ({r.parity:.1e})")
            return 0
        if cfg.format == "openvino":
            from ..deploy.openvino import export_checkpoint as export_openvino

            r = export_openvino(cfg.model_dir, cfg.out, precision=cfg.precision, int8=cfg.int8,
                                calibration=cfg.calibration, labelled=cfg.labelled, task=cfg.task,
                                max_seq_length=cfg.seq_len, overwrite=overwrite)
            from ..deploy.onnx import write_text_assets

            write_text_assets(cfg.model_dir, r.out_dir)  # tokenizer + labels.txt: the folder reads text by itself
            files = ", ".join(f"{n} ({b / 2**20:.1f} MB)" for n, b in r.files.items())
            parity = ", ".join(f"{k} {v:.2e}" for k, v in r.parity.items())
            print(f"{r.out_dir}: {files}; runs as {r.runs_as}; relative error vs PyTorch: {parity}"
                  + (f"; accuracy {r.accuracy}" if getattr(r, "accuracy", None) else ""))
            return 0
        if cfg.format != "onnx":
            from ..deploy import mobile

            fn = mobile.export_executorch if cfg.format == "executorch" else mobile.export_litert
            path = fn(load_model(cfg.model_dir), cfg.out, int8=cfg.int8, seq_len=cfg.seq_len,
                      overwrite=overwrite, source=cfg.model_dir)
            print(f"{path}: {path.stat().st_size / 2**20:.1f} MB, batch 1 x seq {cfg.seq_len}, "
                  f"{'int8' if cfg.int8 else 'fp32'}, parity with PyTorch checked")
            return 0
        report = export_checkpoint(cfg.model_dir, cfg.out, int8=cfg.int8, overwrite=overwrite)
    except (ExportError, FileExistsError) as e:
        raise ValueError(str(e)) from None
    files = ", ".join(f"{n} ({b / 2**20:.1f} MB)" for n, b in report.files.items())
    parity = ", ".join(f"{k} {v:.2e}" for k, v in report.parity.items())
    print(f"{report.out_dir}: {files}; outputs {', '.join(report.outputs)}; relative error vs PyTorch: {parity}")
    return 0
