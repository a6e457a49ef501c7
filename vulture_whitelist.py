"""Code `make deadcode` (vulture) would call unused, kept on purpose: each line says why.

Names are listed on a stand-in object, as vulture counts any use of a name as a use. Keep
this list short: code nothing needs is deleted, not listed here.
"""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# Columns written for the people who read the table (who last set a level), never read back.
_.updated_by  # core/models.py AutonomyLevel.updated_by; set in approvals/autonomy.py
_.posted_at  # core/models.py SlackMessage.posted_at; set in bot/slack_posts.py

# Message fields stored for whoever reads the outbox table; rows already stored carry them, so
# decoding keeps them.
_.lateness_s  # core/messages.py EscalationNotify.lateness_s; set in escalations/sweeper.py

# slack_sdk's SQLAlchemy stores call these overrides with this signature; we name our own tables.
_.build_installations_table  # bot/installations.py
_.build_bots_table  # bot/installations.py
_.build_oauth_states_table  # bot/installations.py
_.table_name  # the overrides' parameter, required by the signature they override

# A DB-API connection attribute pysqlite reads (None: we issue BEGIN ourselves).
_.isolation_level  # core/db.py

# Read by chaos/click_storm.py (chaos/ is not scanned).
_.response_urls  # bot/sandbox/workspace.py Workspace.response_urls

# __exit__'s parameters: the protocol fixes them, context managers that ignore them still take them.
_.exc_type
_.tb

# Fields and members that exist for the JSON schema pydantic makes of them (tests of the edit form).
_.EXPRESS  # tests/bot/blocks/test_modals.py, tests/sandbox/payloads.py: Speed.EXPRESS
_.speed  # RefundParams.speed
_.tags  # RefundParams.tags

# A tool that must be refused at decoration (*args cannot be described by a schema).
_.order_ids  # tests/agent/test_tools.py

# Written into the audit event's data by the connect flow and kept on the result for callers;
# agent/connect.py is another slice's file in the redesign of issue 15 (reported there).
_.refreshable  # agent/connect.py Connected.refreshable

# gunicorn's worker calls and reads these: our ServeWorker overrides its hook and keeps its count.
_.load_wsgi  # bot/prefork.py ServeWorker.load_wsgi, called by gunicorn's Worker.init_process
_.nr_conns  # bot/prefork.py ServeWorker.accept; gunicorn's ThreadWorker limits connections by it

# The frameworks call these on the fake models of tests/client/test_recipes.py (their interfaces).
_.bind_tools  # LangChain's BaseChatModel, called by examples/recipes/langgraph_agent.py
_.get_response  # the Agents SDK's Model
_.stream_response  # the Agents SDK's Model (abstract: must be there)

# RE2's options object reads these when approvals/rules.py compiles a pattern with it.
_.log_errors  # no C++ log line on stderr per refused pattern
_.max_mem  # a pattern whose program needs more memory is refused
