"""A data scientist's training script, unchanged for Kiln: scikit-learn on the bundled breast
cancer data, logged with the stock MLflow client, exported to ONNX with skl2onnx and logged as an
MLflow model with the `onnx` flavour. Kiln sets MLFLOW_TRACKING_URI and MLFLOW_RUN_ID."""

import os

import mlflow
import mlflow.onnx
import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_breast_cancer(return_X_y=True)
X = X.astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

C = float(os.environ.get("SK_C", "0.5"))
with mlflow.start_run() as run:  # resumes the run Kiln created (MLFLOW_RUN_ID)
    print(f"training in run {run.info.run_id}")
    mlflow.log_params({"C": C, "model": "logistic_regression"})
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
    model.fit(X_train, y_train)
    accuracy = float(model.score(X_test, y_test))
    mlflow.log_metric("test_accuracy", accuracy)
    onx = to_onnx(model, X_train[:1], options={id(model.steps[-1][1]): {"zipmap": False}})
    mlflow.onnx.log_model(onx, name="model")
    # Rows and probabilities for the test to compare Kiln's predictions with.
    np.save(os.path.join(os.environ["KILN_OUTPUT_DIR"], "x_test.npy"), X_test[:20])
    np.save(
        os.path.join(os.environ["KILN_OUTPUT_DIR"], "p_test.npy"),
        model.predict_proba(X_test[:20]).astype(np.float32),
    )
    print(f"test accuracy {accuracy:.4f}")
