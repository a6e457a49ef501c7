"""The Slack adapter and composition root: Bolt listeners, Block Kit renderers, the outbox
sender, the CLI and the HTTP server. The only package that imports Slack or Bolt.
"""
