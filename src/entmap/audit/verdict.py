"""The verdict on an adapter: pass, warn or fail, from the thresholds of ``audit.verdict`` (docs/audit.md).

Each rule compares one number of the adapter as published (its final checkpoint, scale 1) with a
declared threshold; the verdict is the worst outcome of any rule, and every rule that fired gives a
reason in words:

* disruption: frac_disrupted > fail_frac_disrupted fails, > warn_frac_disrupted warns;
* leakage without the trigger: its lower 95% bound > fail_leakage fails, > warn_leakage warns
  (the bound, so that leakage within the seed noise does not count);
* fidelity: target_fidelity(1) - target_fidelity(0) <= min_fidelity_gain warns (the adapter does not
  bring its concept over what the base already draws);
* a number that could not be measured (NaN) warns, naming it.

Pass means no rule fired. The thresholds' defaults (:data:`entmap.config.plan.VERDICT_DEFAULTS`)
are a starting point, not a standard: they are written into the config and into audit.json.
"""

from __future__ import annotations

import math
from typing import Any

ORDER = {"pass": 0, "warn": 1, "fail": 2}


def _measured(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def verdict(metrics: dict[str, Any], thresholds: dict[str, float]) -> tuple[str, list[str]]:
    """(pass | warn | fail, reasons) for one adapter's ``metrics`` (module docstring).

    ``metrics`` keys: frac_disrupted, n_unrelated, leakage, leakage_low, leakage_high,
    fidelity_gain, target_fidelity.
    """
    outcomes: list[tuple[str, str]] = []
    frac = metrics.get("frac_disrupted")
    if not _measured(frac):
        outcomes.append(("warn", "the share of disrupted unrelated prompts could not be measured"))
    else:
        n = metrics.get("n_unrelated", 0)
        words = f"{round(frac * n)} of {n} unrelated prompts ({frac:.0%}) are disrupted beyond the base's seed noise"
        if frac > thresholds["fail_frac_disrupted"]:
            outcomes.append(
                ("fail", f"{words}, more than the failure threshold {thresholds['fail_frac_disrupted']:.0%}")
            )
        elif frac > thresholds["warn_frac_disrupted"]:
            outcomes.append(
                ("warn", f"{words}, more than the warning threshold {thresholds['warn_frac_disrupted']:.0%}")
            )
    low = metrics.get("leakage_low")
    if not _measured(low):
        outcomes.append(("warn", "the leakage without the trigger could not be measured"))
    else:
        words = (
            f"its look leaks into unrelated prompts without the trigger: CLIP-I shift {metrics['leakage']:+.3f} "
            f"(95% interval {low:+.3f} to {metrics['leakage_high']:+.3f})"
        )
        if low > thresholds["fail_leakage"]:
            outcomes.append(("fail", f"{words}, lower bound above the failure threshold {thresholds['fail_leakage']}"))
        elif low > thresholds["warn_leakage"]:
            outcomes.append(("warn", f"{words}, lower bound above the warning threshold {thresholds['warn_leakage']}"))
    gain = metrics.get("fidelity_gain")
    if not _measured(gain):
        outcomes.append(("warn", "the target fidelity could not be measured"))
    elif gain <= thresholds["min_fidelity_gain"]:
        outcomes.append(
            (
                "warn",
                f"target fidelity at scale 1 is {gain:+.3f} against the base model's, not more than "
                f"{thresholds['min_fidelity_gain']}: the adapter does not add its concept to the trigger prompt",
            )
        )
    if not outcomes:
        return "pass", [
            "no unrelated prompt is disrupted beyond the thresholds, no leakage above them, and the "
            "adapter raises its target fidelity"
        ]
    worst = max(outcomes, key=lambda o: ORDER[o[0]])[0]
    return worst, [reason for _, reason in sorted(outcomes, key=lambda o: -ORDER[o[0]])]
