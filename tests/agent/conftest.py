from tests.agent.harness import fake_anthropic, stack

__all__ = ["fake_anthropic", "stack"]
