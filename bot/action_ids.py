"""Every Slack action_id and callback_id the app uses: one source (DESIGN.md's contract)."""

APPROVE = "approve"
REJECT = "reject"
EDIT = "edit"
VETO = "veto"
ACKNOWLEDGE = "acknowledge"
# An action in `unknown`: a person says whether it ran (each opens RESOLVE_MODAL for a note;
# "did not run" also offers to run it again).
RESOLVE_RAN = "resolve_ran"
RESOLVE_NOT_RUN = "resolve_not_run"
PROMOTE = "promote"
DISMISS = "dismiss"
EXTEND_BUDGET = "extend_budget"
STOP_TASK = "stop_task"
CHOOSE_TYPE = "choose_type"
REJECT_MODAL = "reject_reason"
EDIT_MODAL = "edit_params"
VETO_MODAL = "veto_reason"
RESOLVE_MODAL = "resolve_note"
REPORT_INCIDENT = "report_incident"
# On the receipt of a run whose tool declares an undo, within its type's undo_window: drafts the
# compensating action (value: the public id of the action that ran).
UNDO = "undo"
REVIEW_OK = "review_ok"
# Review many at once: App Home and reminders offer it (value: a task type, or "" for all);
# it opens REVIEW_MODAL, whose checkboxes' values are the actions' public ids.
REVIEW_WAITING = "review_waiting"
REVIEW_MODAL = "review_batch"
REVIEW_PICK = "review_pick"  # the checkboxes of one group of items in REVIEW_MODAL
CONNECT = "connect"  # a url button to a person's own sign-in link; Slack still sends its click
# A question an API client asks people (HumanLayer's contact request): its Answer button opens
# ANSWER_MODAL, whose submission is the answer.
ANSWER_QUESTION = "answer_question"
ANSWER_MODAL = "question_answer"
# "Approve, and allow similar…" on a pending card (value: the action's public id; admins only, not
# on task types with `rules: false`): opens ALLOW_SIMILAR_MODAL, whose submission approves the
# action and makes a standing rule.
ALLOW_SIMILAR = "allow_similar"
ALLOW_SIMILAR_MODAL = "allow_similar_rule"
