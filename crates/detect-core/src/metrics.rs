//! Evaluation metrics for labelled data: ROC-AUC and average precision, as
//! scikit-learn's `roc_auc_score` and `average_precision_score` compute them.
