"""Linear probe of a representation (spec: introvae.md, "Images"): one sampled z per image, standardised with the
training split's mean and deviation, then a linear SVM (C = 0.025) and k-nearest neighbours (k = 5 and 100),
fitted on the training split and scored on the test split."""
import numpy as np

SVM_C = 0.025
NEIGHBOURS = (5, 100)


def probe_accuracies(train_z: np.ndarray, train_labels: np.ndarray, test_z: np.ndarray,
                     test_labels: np.ndarray) -> dict[str, float]:
    """train_z (N, d), test_z (M, d) -> {'eval/probe_svm': …, 'eval/probe_knn5': …, 'eval/probe_knn100': …}."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    mean, std = train_z.mean(axis=0), train_z.std(axis=0) + 1e-8
    train_x, test_x = (train_z - mean) / std, (test_z - mean) / std
    svm = LinearSVC(C=SVM_C, max_iter=5_000).fit(train_x, train_labels)
    scores = {"eval/probe_svm": float((svm.predict(test_x) == test_labels).mean())}
    for k in NEIGHBOURS:
        if k <= len(train_x):
            knn = KNeighborsClassifier(n_neighbors=k).fit(train_x, train_labels)
            scores[f"eval/probe_knn{k}"] = float((knn.predict(test_x) == test_labels).mean())
    return scores
