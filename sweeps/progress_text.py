"""A running trial's progress as one line of text (Ray-free: the no-Ray backend prints the same lines)."""


def duration(seconds: float) -> str:
    """Short human form: 45 s, 12 min, 2.3 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def trial_progress(step: int, total: int, rate: float, metrics: dict, keys: tuple[str, ...] = ()) -> str:
    """'step 1500/30000 (5%), 22.7 steps/s, ~21 min left, eval/kl 12.3': the first two of `keys` (the study's
    progress metrics) the report carries."""
    parts = [f"step {step}/{total} ({step / total:.0%})" if total else f"step {step}"]
    if rate > 0:
        parts.append(f"{rate:.3g} steps/s")
        if total > step:
            parts.append(f"~{duration((total - step) / rate)} left")
    figures = [f"{k} {metrics[k]:.4g}" for k in keys
               if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)]
    return ", ".join(parts + figures[:2])
