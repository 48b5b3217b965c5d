"""Export: a trained model → one ONNX file with its preprocessing inside (``onnx``), int8 copies
and their parity report (``quantize``), and the runtime that runs it as training did
(``runtime.OnnxPredictor``)."""
