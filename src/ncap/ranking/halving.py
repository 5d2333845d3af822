"""``ncap rank --strategy halving``: synchronous successive halving over real fine-tuning runs.

Every candidate is trained to the first rung's budget; the candidates are ranked by the rung score
(:mod:`ncap.ranking.rung_scores`) and the top ``ceil(n / eta)`` continue to the next rung, each from
its own checkpoint (:mod:`ncap.training.checkpoint`), so its trajectory is the one an uninterrupted
run would have had. The decisions are :func:`ncap.ranking.halving_core.decide`'s.

Files in ``OUT``:

- ``rungs/<k>/<candidate>.json``: a candidate's record at the end of rung ``k`` (every point so
  far), written atomically after its checkpoint; ``resume`` redoes only a missing, damaged or
  failed one (:mod:`ncap.ranking.halving_state`), from the same inputs.
- ``checkpoints/<candidate>.pt``: where a surviving candidate continues from (deleted once it is
  dropped or finished, unless ``keep_checkpoints``).
- ``rungs.json``: the settings and every decided rung (who was scored, the scores, who continued,
  who was dropped and why), rewritten atomically after each rung (and rebuilt from the rung
  records on resume).
- ``results.json`` (with ``rungs`` and ``cost``), ``results.csv``, the plots and ``rungs.png``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ncap.exceptions import ConfigError, OutputExists
from ncap.predict.caveats import separation
from ncap.ranking.cost import run_cost
from ncap.ranking.halving_core import (
    RungDecision,
    decide,
    halving_budgets,
    kept_count,
    rung_steps,
)
from ncap.ranking.halving_state import check_state, read_rung_record, rung_file
from ncap.ranking.jobs import CandidateJob, RungJob
from ncap.ranking.preflight import check_burn_in
from ncap.ranking.rung_scores import (
    DEFAULT_RUNG_SCORE,
    RungScoring,
    check_rung_score,
    min_points,
    needs_logme,
    reads_source_accuracy,
    score_rung,
)
from ncap.ranking.scoring import assumed_note, target_or_assumed, trust_of
from ncap.ranking.segment import checkpoint_path
from ncap.ranking.source_accuracy import require_reader, source_accuracy_summary
from ncap.ranking.spec import RunContext, RunSpec
from ncap.report import write_outputs
from ncap.report.progress import progress_bars
from ncap.results import RankResult
from ncap.storage import atomic_write_json, to_jsonable
from ncap.training.config import FinetuneConfig
from ncap.training.schedule import eval_steps

__all__ = ["HalvingSettings", "RungPlan", "plan_halving", "plan_rungs", "run_halving"]


@dataclass(frozen=True)
class HalvingSettings:
    """Successive halving's settings.

    Parameters
    ----------
    eta : float
        The top ``ceil(n / eta)`` candidates of a rung continue (2 halves, 3 keeps a third).
    min_budget, max_budget : float, optional
        First and last rung budgets in epochs; default: the run's budget (``--epochs``) as the
        maximum and ``max / eta**2`` as the minimum (three rungs).
    score : str
        The rung score (:mod:`ncap.ranking.rung_scores`; default: the recommended score).
    keep_checkpoints : bool
        Keep the checkpoints of dropped and finished candidates.
    """

    eta: float = 2.0
    min_budget: float | None = None
    max_budget: float | None = None
    score: str = DEFAULT_RUNG_SCORE
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        check_rung_score(self.score)
        if not self.eta > 1:
            raise ConfigError(f"eta must be > 1 (2 halves, 3 keeps a third); got {self.eta}.")

    def budgets(self, run_epochs: float) -> tuple[float, ...]:
        top = self.max_budget if self.max_budget is not None else run_epochs
        low = self.min_budget if self.min_budget is not None else top / self.eta**2
        return halving_budgets(low, self.eta, top)


def plan_rungs(
    halving: HalvingSettings, config: FinetuneConfig, n_train: int
) -> tuple[FinetuneConfig, tuple[float, ...], tuple[int, ...]]:
    """The run's config (its budget is the maximum budget, evaluated as ``config`` would be) and
    the rungs' budgets (epochs) and steps."""
    epochs = config.total_steps(n_train) / config.steps_per_epoch(n_train)
    budgets = halving.budgets(config.epochs if config.steps is None else epochs)
    steps = rung_steps(budgets, config.steps_per_epoch(n_train))
    # the default schedule is laid out for the first rung (its points 1/8 ... 1 of it, then
    # doublings), and --val-share's cap for the first rung's training images
    anchor = config.eval_anchor if config.eval_anchor is not None else steps[0]
    run_config = replace(config, epochs=budgets[-1], steps=None, eval_anchor=anchor)
    return run_config, budgets, steps


def _clear(out_dir: Path) -> None:
    for folder in ("rungs", "checkpoints"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    (out_dir / "rungs.json").unlink(missing_ok=True)


@dataclass(frozen=True)
class RungPlan:
    """What a halving run settles before any training (:func:`plan_halving`): the run's config,
    the rungs' budgets (epochs) and steps, T (``target``, ``assumed`` when unset), the cost
    figure's reference (epochs) and the settings every rung record stores (``stored``: as read
    back from JSON, what resume compares)."""

    config: FinetuneConfig
    budgets: tuple[float, ...]
    steps: tuple[int, ...]
    target: float
    assumed: bool
    reference: float
    settings: dict[str, Any]
    stored: dict[str, Any]

    def planned_runs(self, n: int, eta: float) -> int:
        """Candidate runs over all rungs for ``n`` candidates, if nothing fails."""
        planned = 0
        for k in range(len(self.budgets)):
            planned += n
            n = kept_count(n, eta, k == len(self.budgets) - 1)
            if n <= 1:
                break
        return planned


def plan_halving(spec: RunSpec, halving: HalvingSettings) -> RungPlan:
    """The rungs of ``spec`` under ``halving``, checked before any training: the first rung has
    the points the score needs, the burn-in fits, a source accuracy given is read, the reference
    covers the maximum budget."""
    n_train = len(spec.dataset.y_train)
    predictor, full_epochs = spec.predictor, spec.reference_epochs
    run_config, budgets, steps = plan_rungs(halving, spec.config, n_train)
    first_points = sum(1 for s in eval_steps(run_config, n_train, extra=steps) if s <= steps[0])
    if first_points < min_points(halving.score, predictor):
        raise ConfigError(
            f"the first rung ({budgets[0]:g} epochs, {steps[0]} steps) has {first_points} "
            f"evaluation point(s) but the {halving.score!r} score needs "
            f"{min_points(halving.score, predictor)}; raise --min-budget or set a small --eval-every."
        )
    check_burn_in(run_config, predictor, n_train, extra=steps)
    # the rungs' scores read each budget as a share of T (assumed as for a fixed budget when unset)
    target, assumed = target_or_assumed(full_epochs, None, budgets[-1])
    require_reader(spec.source_accuracy, [halving.score],
                   reads_source_accuracy(halving.score, [b / target for b in budgets]))  # fmt: skip
    reference = full_epochs if full_epochs is not None else budgets[-1]
    if reference < budgets[-1]:
        raise ConfigError(
            f"full_epochs ({full_epochs}) must be at least the maximum budget ({budgets[-1]:g})."
        )
    settings = spec.settings() | {
        "finetune": run_config.to_dict(),
        "budget_epochs": budgets[-1],
        "budget_steps": steps[-1],
        "strategy": "halving",
        "halving": asdict(halving) | {"budgets_epochs": list(budgets), "rung_steps": list(steps)},
    }
    stored = json.loads(json.dumps(to_jsonable(settings)))
    return RungPlan(run_config, budgets, steps, target, assumed, reference, settings, stored)


def _prepare_out_dir(ctx: RunContext, stored: dict[str, Any]) -> None:
    """Refuse an earlier halving run in ``ctx.out_dir`` unless resumed (its state checked) or
    overwritten (cleared)."""
    out_dir, log = ctx.out_dir, ctx.log
    state_path = out_dir / "rungs.json"
    if not (state_path.exists() or (out_dir / "rungs").exists()):
        return
    if ctx.overwrite:
        _clear(out_dir)
    elif not ctx.resume:
        raise OutputExists(
            f"{out_dir} already holds a successive-halving run; pass --resume "
            "(Execution(mode='resume')) to continue it, --overwrite (mode='overwrite') to "
            "start over, or choose another output directory."
        )
    else:
        problem = check_state(state_path, stored)
        if problem is not None and log:
            log(f"{state_path} is malformed ({problem}); it is rebuilt from the rung records")


def run_halving(
    spec: RunSpec, halving: HalvingSettings, ctx: RunContext, *, environment: dict[str, Any]
) -> RankResult:
    """Successive halving of ``spec``'s candidates (:class:`ncap.ranking.strategies.Halving`);
    ``environment``: the software, machine and runtime ``results.json`` records."""
    plan = plan_halving(spec, halving)
    _prepare_out_dir(ctx, plan.stored)
    run = _HalvingRun(spec, halving, ctx, plan)
    planned = plan.planned_runs(len(spec.models), halving.eta)
    with progress_bars(ctx.progress, planned, log=ctx.log) as bars:
        for k in range(len(plan.budgets)):
            run.train_rung(k, bars)
            decision = run.cut(k)
            if k == len(plan.budgets) - 1 or len(decision.kept) <= 1:
                break
    return run.finish(environment)


@dataclass
class _HalvingRun:
    """A halving run between its rungs: the inputs, and what the rungs so far left (the survivors,
    each candidate's latest record, seconds, rung scores and the evidence its last score saw, the
    rung records, the notes)."""

    spec: RunSpec
    halving: HalvingSettings
    ctx: RunContext
    plan: RungPlan
    alive: list[str] = field(init=False)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(init=False)
    history: dict[str, list[dict[str, Any]]] = field(init=False)
    rungs: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(init=False)
    failed: dict[str, str] = field(default_factory=dict)  # of the current rung

    def __post_init__(self) -> None:
        models = self.spec.models
        self.alive = list(models)
        self.seconds = {name: 0.0 for name in models}
        self.history = {name: [] for name in models}
        self.notes = [assumed_note(self.plan.target, None)] if self.plan.assumed else []

    def _record(self, k: int, name: str) -> tuple[dict[str, Any] | None, str | None]:
        return read_rung_record(rung_file(self.ctx.out_dir, k, name), name, self.plan.stored)

    def train_rung(self, k: int, bars: Any) -> None:
        """Run rung ``k`` for the survivors without a good record of it (a missing, damaged or
        failed record of an earlier process runs again), then read every survivor's record."""
        plan, ctx, log = self.plan, self.ctx, self.ctx.log
        todo = []
        for name in self.alive:
            record, problem = self._record(k, name)
            if problem is not None and log:
                log(f"{rung_file(ctx.out_dir, k, name)} is malformed ({problem}); {name} runs "
                    f"rung {k} again")  # fmt: skip
            if record is None or record["status"] != "ok":
                todo.append(name)
        rung = RungJob(rung=k, stop_at=plan.steps[k], eval_steps=plan.steps,
                       checkpoint_dir=str(ctx.out_dir / "checkpoints"))  # fmt: skip
        job = CandidateJob(self.spec.dataset, plan.config, self.spec.predictor, None, ctx.runtime,
                           self.spec.model_options, rung=rung,
                           logme=needs_logme(self.halving.score))  # fmt: skip
        if log:
            log(f"rung {k}: {len(self.alive)} candidate(s) to {plan.budgets[k]:g} epochs "
                f"({plan.steps[k]} steps)")  # fmt: skip
        for record in ctx.executor.run(
            todo, job, on_start=bars.candidate_start, on_step=bars.step, log=log
        ):
            atomic_write_json({"settings": plan.settings, "record": record},
                              rung_file(ctx.out_dir, k, record["name"]))  # fmt: skip
            bars.candidate_done(record["name"])
            if log and record["status"] != "ok":
                log(f"{record['name']} failed: {record['reason']}")
        self.failed = {}
        for name in self.alive:
            record, problem = self._record(k, name)
            if record is None:  # (written by this process a moment ago)
                raise ConfigError(f"{rung_file(ctx.out_dir, k, name)} cannot be read: {problem}")
            if name in self.latest:  # LogME was computed once, on the pretrained weights
                earlier = self.latest[name].get("backbone") or {}
                kept = {key: v for key, v in earlier.items() if key.startswith("logme")}
                record["backbone"] = kept | (record.get("backbone") or {})
            self.latest[name] = record
            self.seconds[name] += float(record.get("segment_seconds") or 0.0)
            if record["status"] != "ok":
                self.failed[name] = record["reason"] or "failed"

    def cut(self, k: int) -> RungDecision:
        """Score rung ``k``'s survivors, decide who continues, record the rung (``rungs.json``)
        and delete the checkpoints of the candidates that are done."""
        plan, halving, alive, failed = self.plan, self.halving, self.alive, self.failed
        budget, last = plan.budgets[k], k == len(plan.budgets) - 1
        scoring = RungScoring(
            budget_steps=plan.steps[k],
            steps_per_epoch=plan.config.steps_per_epoch(len(self.spec.dataset.y_train)),
            full_epochs=plan.target,
            fraction_of_max=budget / plan.budgets[-1],
            classes=self.spec.dataset.num_classes,
            source_accuracy=self.spec.source_accuracy,
        )
        rated = score_rung(halving.score, [self.latest[name] for name in alive],
                           self.spec.predictor, scoring)  # fmt: skip
        scores, notes, seen = rated.values, rated.notes, rated.evidence
        self.evidence |= seen
        for name in alive:
            self.history[name].append({"rung": k, "budget_epochs": budget, "score": scores[name]})
        if k == 0:
            self.notes.extend(notes)
            for note in notes if self.ctx.log else ():
                self.ctx.log(f"note: {note}")
        # a candidate at chance has learnt nothing its score could read: it ranks below the
        # others (among themselves by observed accuracy; failed ones last), whatever its score says
        chance = [n for n in alive if "at-chance" in (seen.get(n) or {}).get("flags", {})]
        observed = {n: self.latest[n].get("observed_accuracy") or 0.0 for n in chance}
        order_k = (
            [n for n in alive if n not in chance and n not in failed]
            + sorted(chance, key=lambda n: -observed[n])
            + [n for n in alive if n in failed]
        )
        decision = decide({n: None if n in chance else v for n, v in scores.items()}, order_k,
                          eta=halving.eta, last=last, failed=failed)  # fmt: skip
        self.rungs.append(self._rung_record(k, decision, scores, seen))
        atomic_write_json({"settings": plan.settings, "rungs": self.rungs},
                          self.ctx.out_dir / "rungs.json")  # fmt: skip
        done = last or len(decision.kept) <= 1
        finished = list(decision.dropped) + (list(decision.kept) if done else [])
        if not halving.keep_checkpoints:
            for name in finished:
                checkpoint_path(self.ctx.out_dir / "checkpoints", name).unlink(missing_ok=True)
        self.alive = list(decision.kept)
        return decision

    def _rung_record(
        self, k: int, decision: RungDecision, scores: dict[str, float | None], seen: dict[str, Any]
    ) -> dict[str, Any]:
        """Rung ``k``'s entry of ``rungs.json``: who was scored, the scores, who continued, who
        was dropped and why, the intervals and flags, and whether the cut separated."""
        budget, score, failed = self.plan.budgets[k], self.halving.score, self.failed
        reasons = {}
        for name in decision.dropped:
            if name in failed:
                reasons[name] = f"failed at rung {k}: {failed[name]}"
            else:
                pos = decision.ranked.index(name) + 1
                value = "none" if scores[name] is None else f"{scores[name]:.4f}"
                flags = ", ".join((seen.get(name) or {}).get("flags") or {})
                reasons[name] = (
                    f"dropped at rung {k} ({budget:g} epochs): {score} {value}"
                    f"{f' ({flags})' if flags else ''} ranked {pos} of "
                    f"{len(decision.ranked)}; the top {len(decision.kept)} continued"
                )
        return {
            "rung": k,
            "budget_epochs": budget,
            "steps": self.plan.steps[k],
            "score": score,
            "ranked": list(decision.ranked),
            "scores": {name: scores[name] for name in decision.ranked},
            "kept": list(decision.kept),
            "dropped": reasons,
            "intervals": {
                n: ((seen.get(n) or {}).get("prediction") or {}).get("95") for n in decision.ranked
            },
            "flags": {n: sorted((seen.get(n) or {}).get("flags") or {}) for n in seen},
            "separation": _cut(decision, seen),
        }

    def _final_records(self) -> list[dict[str, Any]]:
        """Each candidate's last record with its total seconds, the evidence its last score saw
        and its rungs (where and why it was dropped)."""
        records = []
        for name in self.spec.models:
            record = dict(self.latest[name])
            record.pop("segment_seconds", None)
            record["seconds"] = record["cost_seconds"] = self.seconds[name]
            record["steps"] = int(record.get("steps") or 0)
            dropped = next((r for r in self.rungs if name in r["dropped"]), None)
            record |= self.evidence.get(name, {})  # the score, prediction and flags that decided
            record["halving"] = {
                "rungs": self.history[name],
                "dropped_at_rung": None if dropped is None else dropped["rung"],
                "why": None if dropped is None else dropped["dropped"][name],
            }
            records.append(record)
        return records

    def _statements(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The separation verdict and the trust statement of the last rung that compared
        candidates."""
        evidence, plan = self.evidence, self.plan
        final = ([r for r in self.rungs if len(r["ranked"]) > 1] or self.rungs)[-1]
        verdict = separation([
            {"name": n, "prediction": (evidence.get(n) or {}).get("prediction")}
            for n in final["ranked"]
            if n in evidence
        ])  # fmt: skip
        if verdict.get("statement"):
            verdict["statement"] = (
                f"at the last rung that compared candidates (rung {final['rung']}, "
                f"{final['budget_epochs']:g} epochs): {verdict['statement']}"
            )
        trust = trust_of(
            [{"name": n} | evidence[n] for n in final["ranked"] if n in evidence],
            final["budget_epochs"] / plan.target if plan.target else None,
        )
        return verdict, trust

    def finish(self, environment: dict[str, Any]) -> RankResult:
        """The result: the final order, the records, the statements and cost; outputs written."""
        plan, score, given = self.plan, self.halving.score, self.spec.source_accuracy
        ranking = _final_order(self.rungs, self.latest)
        records = self._final_records()
        verdict, trust = self._statements()
        recorded: dict[str, Any] = {}
        if given:
            recorded, given_note = source_accuracy_summary(given, records)
            self.notes.append(given_note)
        spe = plan.config.steps_per_epoch(len(self.spec.dataset.y_train))
        result = RankResult(
            candidates=records,
            settings=plan.settings
            | ({"source_accuracy": recorded} if recorded else {})
            | environment
            | {
                "score": {
                    "name": score,
                    "requested": score,
                    "target_epochs": plan.target,
                    "target_assumed": plan.assumed,
                    "notes": self.notes,
                    "separation": verdict,
                    "trust": trust,
                }
            },
            out_dir=self.ctx.out_dir,
            cost=run_cost(
                records, full_steps=round(plan.reference * spe), full_epochs=plan.reference
            ),  # fmt: skip
            order=ranking,
            rungs=self.rungs,
        )
        result.files = write_outputs(result)  # (with rungs.png)
        return result


def _cut(decision: RungDecision, seen: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Whether a rung's cut separated the last kept from the first dropped candidate (their 95%
    intervals apart, neither flagged); None when nothing was cut."""
    dropped = [n for n in decision.ranked if n in decision.dropped and n in seen]
    kept = [n for n in decision.kept if n in seen]
    if not dropped or not kept:
        return None
    pair = [{"name": n, "prediction": seen[n].get("prediction")} for n in (kept[-1], dropped[0])]
    verdict = separation(pair)
    if not verdict["separated"]:
        verdict["statement"] = (
            f"the cut between {kept[-1]} (kept) and {dropped[0]} (dropped) could not tell them "
            "apart: " + ("their 95% intervals overlap" if all(
                (p["prediction"] or {}).get("95") for p in pair
            ) else "an interval is withheld (flagged) or missing")
        )  # fmt: skip
    return verdict


def _final_order(rungs: list[dict[str, Any]], latest: dict[str, dict[str, Any]]) -> list[str]:
    """The survivors of the last rung in its order, then those dropped later before those dropped
    earlier (each rung in its own order); failed candidates are left out."""
    out: list[str] = []
    for rung in reversed(rungs):
        for name in rung["ranked"]:
            if name not in out and latest[name]["status"] == "ok":
                out.append(name)
    return out
