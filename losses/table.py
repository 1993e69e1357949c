"""The registry as a Markdown table (the README's loss table is generated from this, never hand-kept)."""

from __future__ import annotations

from lossd.losses.registry import Registry


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(registry: Registry) -> str:
    """One row per loss: name, aliases, inputs (optional ones in brackets), parameters, reductions, the roles
    whose Hessian diagonal it offers, notes."""
    rows = [
        "| loss | aliases | inputs | parameters (default) | reductions (default first) | Hessian diagonal | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in registry:
        inputs = ", ".join(r.name if r.required else f"[{r.name}]" for r in spec.roles)
        params = ", ".join(f"{p.name}={p.default!r}" for p in spec.params) or "—"
        reductions = [spec.default_reduction, *(r for r in spec.reductions if r != spec.default_reduction)]
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{spec.name}`", ", ".join(spec.aliases), inputs, params, ", ".join(reductions),
            ", ".join(spec.hessian_roles_offered) or "—", f"{spec.summary} {spec.notes}".strip(),
        )) + " |")
    return "\n".join(rows) + "\n"
