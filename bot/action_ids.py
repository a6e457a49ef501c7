"""Every Slack action_id and callback_id the app uses: one source (DESIGN.md's contract)."""

APPROVE = "approve"
REJECT = "reject"
EDIT = "edit"
VETO = "veto"
ACKNOWLEDGE = "acknowledge"
# No `resolve`: an action in `unknown` gets `resolve_ran` / `resolve_not_run` (DESIGN.md)
# with the later issue that builds them and the unknown → succeeded / failed moves.
PROMOTE = "promote"
DISMISS = "dismiss"
EXTEND_BUDGET = "extend_budget"
STOP_TASK = "stop_task"
CHOOSE_TYPE = "choose_type"
REJECT_MODAL = "reject_reason"
EDIT_MODAL = "edit_params"
VETO_MODAL = "veto_reason"
REPORT_INCIDENT = "report_incident"
REVIEW_OK = "review_ok"
CONNECT = "connect"  # a url button to a person's own sign-in link; Slack still sends its click
