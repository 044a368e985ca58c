"""scheduled_posts: approved exports become Buffer drafts / scheduled posts on the model's calendar.

Pure parts: calendar (slots), text, ics, ledger and backlog (storage only); flow.py drives a run through
the provider interface in posting.py; assets.py and checks.py tie it to Dagster.
"""
