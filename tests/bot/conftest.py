from tests.bot.slack_app import slack_app

__all__ = ["slack_app"]
