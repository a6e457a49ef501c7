"""Local stand-ins for the outside world: clock, directory of people, and (later) the fake
Slack and Anthropic HTTP servers."""
