"""``carspatial project init | status | assign | add-samples | export | unlock``: trial review projects (docs/review.md).

    carspatial project init PROJECT --manifest cohort/manifest.csv --reviewer alice --reviewer bob \\
        --reviewer carol --due 2025-07-01
    carspatial project assign PROJECT --reader alice --reader bob --adjudicator carol
    carspatial project status PROJECT [--reviewer alice] [--unblind] [--agreement]
    carspatial project add-samples PROJECT        # samples appended to the manifest later
    carspatial project add-samples PROJECT --from new.csv   # ... or listed in another manifest
    carspatial project export PROJECT [-o OUT]
    carspatial project unlock PROJECT RV-7K3F9Q --reviewer alice     # break a stale lock
"""

from __future__ import annotations

import logging
import sys

NAME = "project"
HELP = "trial review projects: blinded double reads, agreement, adjudication and export"

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="project_command", required=True, metavar="{init,status,assign,add-samples,export,unlock}")
    i = sub.add_parser("init", help="create a review project from a cohort manifest")
    i.add_argument("project", help="project folder (created)")
    i.add_argument("--manifest", "-m", required=True, help="cohort manifest (CSV / YAML; see docs/cohorts.md)")
    i.add_argument("--name", help="project name (default: the trial names)")
    i.add_argument("--reviewer", action="append", default=[], metavar="ID[=NAME]",
                   help="register a reviewer (repeat); e.g. --reviewer alice='Dr A. Example'")
    i.add_argument("--due", help="default due date, YYYY-MM-DD")
    i.add_argument("--no-blinding", action="store_true", help="show sample ids to reviewers (default: coded ids)")
    i.add_argument("--type-key", help="cell-type column the reads start from (default: detected per sample)")
    i.add_argument("--hide-original-calls", action="store_true",
                   help="readers start without the table's cell-type calls (they call every cell themselves)")

    s = sub.add_parser("status", help="samples, readers, statuses, due dates (coded ids when blinded)")
    s.add_argument("project")
    s.add_argument("--reviewer", help="only what this reviewer reads or adjudicates")
    s.add_argument("--unblind", action="store_true", help="show sample ids instead of codes (trial coordinator)")
    s.add_argument("--agreement", action="store_true", help="also kappa per sample whose reads are both done")

    a = sub.add_parser("assign", help="assign first/second readers and the adjudicator")
    a.add_argument("project")
    a.add_argument("--reader", action="append", required=True, metavar="ID",
                   help="reader (repeat): two readers give read 1 and read 2 of every sample; more are "
                        "balanced over the samples")
    a.add_argument("--adjudicator", metavar="ID")
    a.add_argument("--samples", nargs="+", metavar="SAMPLE_OR_CODE", help="only these samples (default: all)")
    a.add_argument("--due", help="due date of these samples, YYYY-MM-DD")
    a.add_argument("--force", action="store_true", help="reassign reads that have started (working copies are kept)")
    a.add_argument("--add-reviewer", action="store_true",
                   help="register reader / adjudicator ids that are not in the project yet (default: refused)")

    n = sub.add_parser("add-samples", help="add samples appended to the cohort manifest, assigned like the others")
    n.add_argument("project")
    n.add_argument("--samples", nargs="+", metavar="SAMPLE", help="only these new samples (default: every new one)")
    n.add_argument("--from", dest="from_manifest", metavar="MANIFEST",
                   help="take the new samples from this cohort manifest: its rows are appended to the project's "
                        "manifest (validated first) and added; samples in the project already are named, not added")
    n.add_argument("--reader", action="append", metavar="ID",
                   help="readers to balance the new samples over (repeat; default: the project's readers)")
    n.add_argument("--adjudicator", metavar="ID", help="their adjudicator (default: the project's, least loaded)")
    n.add_argument("--due", help="their due date, YYYY-MM-DD (default: the project's)")

    e = sub.add_parser("export", help="final tables with provenance, agreement tables and report page")
    e.add_argument("project")
    e.add_argument("-o", "--out", help="export folder (default PROJECT/export)")
    e.add_argument("--samples", nargs="+", metavar="SAMPLE_OR_CODE", help="only these samples")
    e.add_argument("--n-boot", type=int, default=None,
                   help="bootstrap resamples of the intervals (default 1000, as status and the report use)")
    e.add_argument("--seed", type=int, default=0)

    u = sub.add_parser("unlock", help="break a stale lock on a read or an adjudication")
    u.add_argument("project")
    u.add_argument("sample", metavar="SAMPLE_OR_CODE")
    g = u.add_mutually_exclusive_group(required=True)
    g.add_argument("--reviewer", help="the reader whose working copy is locked")
    g.add_argument("--adjudication", action="store_true", help="the adjudication's lock")
    u.add_argument("--force", action="store_true", help="break it even when its holder looks alive")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _fmt_status(df) -> str:
    import pandas as pd

    if df.empty:
        return "(no samples)"
    show = pd.DataFrame({"sample": df["sample"]})
    for k in (1, 2):
        prog = df[f"read{k}_progress"]
        show[f"read {k}"] = [("-" if r is None or r != r else f"{r}: {st.replace('_', ' ')}"
                              + (f" {100 * p:.0f}%" if st == "in_progress" and p == p and p is not None else ""))
                             for r, st, p in zip(df[f"read{k}"], df[f"read{k}_status"], prog, strict=True)]
    show["adjudication"] = [("-" if r is None or r != r else f"{r}: {st.replace('_', ' ')}")
                            for r, st in zip(df["adjudicator"], df["adjudication_status"], strict=True)]
    show["status"] = [s.replace("_", " ") for s in df["status"]]
    show["due"] = [(d or "-") + (" OVERDUE" if o else "") for d, o in zip(df["due"], df["overdue"], strict=True)]
    return show.to_string(index=False)


def run(args) -> int:
    from ..model import SampleError
    from ..review import init_project, load_project

    cmd = args.project_command
    if cmd == "init":
        revs = []
        for r in args.reviewer:
            rid, _, name = r.partition("=")
            revs.append((rid.strip(), name.strip()))
        proj = init_project(args.project, args.manifest, name=args.name, reviewers=revs,
                            blinding=not args.no_blinding, due=args.due, type_key=args.type_key,
                            hide_original_calls=args.hide_original_calls)
        _out(f"review project {proj.name!r}: {len(proj.samples)} samples, {len(proj.reviewers)} reviewers, "
             f"blinding {'on' if proj.blinding else 'off'}")
        _out(f"project file: {proj.file}")
        _out("next: carspatial project assign PROJECT --reader A --reader B --adjudicator C")
        return 0
    proj = load_project(args.project)
    if cmd == "status":
        if args.reviewer and args.reviewer not in proj.reviewers:
            raise SampleError(f"no reviewer {args.reviewer!r} in the project (reviewers: "
                              f"{', '.join(proj.reviewers) or 'none'}).", path=proj.file)
        df = proj.status(reviewer=args.reviewer, unblind=args.unblind)
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        _out(f"{proj.name}: {len(proj.samples)} samples (" + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                                      for k, v in counts.items()) + ")")
        _out(_fmt_status(df))
        if args.reviewer:
            nxt = proj.next_for(args.reviewer)
            _out(f"next for {args.reviewer}: {nxt or 'nothing left'}")
        if args.agreement:
            ta = proj.trial_agreement(unblind=args.unblind or not proj.blinding)
            if ta.per_sample.empty:
                _out("agreement: no sample has both reads done yet")
            else:
                ps = ta.per_sample
                _out("agreement (Cohen's kappa; 95% interval: bootstrap over cells):")
                for r in ps.itertuples():
                    _out(f"  {r.sample}: kappa {r.kappa:.3f} ({r.kappa_ci_low:.3f}-{r.kappa_ci_high:.3f}), "
                         f"{r.percent_agreement:.1f}% of {r.n_cells} cells agree, {r.n_disagreements} disagreements")
                p = ta.pooled
                _out(f"  trial (pooled, interval: bootstrap over samples): kappa {p['kappa']:.3f} "
                     f"({p['kappa_ci_low']:.3f}-{p['kappa_ci_high']:.3f})")
        return 0
    if cmd == "assign":
        readers = list(dict.fromkeys(args.reader))
        if len(readers) < 2:
            raise SampleError("give two readers (--reader A --reader B), or more to balance them.")
        if len(readers) == 2:
            proj.assign(args.samples, readers=readers, adjudicator=args.adjudicator, due=args.due, force=args.force,
                        add_reviewers=args.add_reviewer)
        else:
            proj.assign_balanced(readers, adjudicator=args.adjudicator, samples=args.samples, due=args.due,
                                 force=args.force, add_reviewers=args.add_reviewer)
        proj.reload()
        _out(_fmt_status(proj.status()))
        return 0
    if cmd == "add-samples":
        if args.from_manifest:
            if args.samples:
                raise SampleError("give either --samples or --from (the samples of that manifest), not both.")
            res = proj.add_samples_from(args.from_manifest, readers=args.reader, adjudicator=args.adjudicator,
                                        due=args.due)
            _out(f"{proj.name}: {res.summary()}")
            if not res.added:
                return 0
            proj.reload()
            df = proj.status(reviewer=None)
            _out(_fmt_status(df[df["code"].isin(list(res.added.values()))]))
            return 0
        res = proj.add_samples(samples=args.samples, readers=args.reader, adjudicator=args.adjudicator, due=args.due)
        for s in res.missing:
            _out(f"not in the manifest any more (kept): {proj.label(s)}")
        if not res.added:
            _out(f"{proj.name}: no new samples in {proj.manifest_path}")
            return 0
        _out(f"{proj.name}: {len(res.added)} sample(s) added"
             + ("" if res.assigned else " (not assigned: carspatial project assign PROJECT --samples ...)"))
        proj.reload()
        df = proj.status(reviewer=None)
        _out(_fmt_status(df[df["code"].isin(list(res.added.values()))]))
        return 0
    if cmd == "export":
        res = proj.export(args.out, samples=args.samples, n_boot=args.n_boot, seed=args.seed)
        _out(f"{len(res.written)} sample(s) exported to {res.folder}, {len(res.skipped)} not ready")
        for s, p in res.written.items():
            _out(f"  {s}: {p.name}")
        for s, why in res.skipped.items():
            _out(f"  not exported {s}: {why}")
        if res.agreement is not None:
            p = res.agreement.pooled
            _out(f"agreement: pooled kappa {p['kappa']:.3f} ({p['kappa_ci_low']:.3f}-{p['kappa_ci_high']:.3f}, "
                 f"bootstrap over samples) over {p['n_cells']} cells of {p['n_samples']} samples; "
                 f"report: {res.folder / 'agreement.html'}")
        return 0 if res.written else 1
    if cmd == "unlock":
        from ..review.lock import break_lock, read_lock, stale_reason

        path = proj.adjudication_path(args.sample) if args.adjudication else proj.read_path(args.sample, args.reviewer)
        info = read_lock(path)
        if info is None:
            _out(f"{proj.label(args.sample)}: not locked")
            return 0
        reason = stale_reason(info)
        if reason is None and not args.force:
            raise SampleError(f"locked by {info.describe()}, and that session looks alive; not broken.",
                              path=path, hint="Ask them to close it; --force breaks it anyway.")
        break_lock(path, by="carspatial project unlock")
        _out(f"{proj.label(args.sample)}: lock of {info.describe()} broken ({reason or 'forced'})")
        return 0
    return 1
