"""BiLSTM + attention pooling on scikit-learn's bundled 8x8 digits, read row by row.

    python -m experiments.classify --config=experiments/configs/classify_digits.py --workdir=/tmp/digits
    # one pixel per step (T = 64) instead of one row (T = 8):
    python -m experiments.classify --workdir=/tmp/digits_px --config.data.digits_mode=pixel

Data: rnn_jax.tasks.digits' fixed split (1438 train / 359 test images, seed 0),
8 steps of 8 pixels in [0, 1]. Model: LSTM H = 64 per direction, additive attention
(A = 32) over the 2H = 128-wide states, linear readout to 10 classes (42,826 params).
Adam 3e-3 with 50 warmup steps and cosine decay, clip 1, batch 32, 1,500 steps
(~33 epochs).

Expected (measured on the 2-core CPU shared with other jobs, seed 0): test accuracy
0.975 (350/359; per class 0.94-1.00; most confusions 3 -> 9), 57 s wall including
compilation (18 s CPU). Test accuracy by step 250/500/750/1000/1250/1500: 0.866,
0.919, 0.961, 0.978, 0.975, 0.975. Outputs: eval.json (confusion matrix),
confusion_matrix.png, attention.png (weights of 8 test digits).
"""

from rnn_jax import classify


def get_config():
    config = classify.default_config()
    config.data.source = "digits"
    config.data.digits_mode = "row"
    config.num_steps = 1500
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 50
    config.eval_every = 250
    config.checkpoint_every = 750
    return config
