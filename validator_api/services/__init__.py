"""Database operations of the API, apart from the routes: rounds, submissions, jobs, scoring, upkeep.

Each public function does one state change in one transaction and raises `ApiError` for refusals
before it writes anything, so a refused request leaves no trace but its nonce record.
"""
