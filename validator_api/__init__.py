"""The Validator API: the one shared service of the subnet (rounds, commit–reveal, jobs, weights).

`validator_api.app:create_app` builds the FastAPI app; `validator_api.app:app` is the module-level
instance uvicorn serves (`uvicorn validator_api.app:app`).
"""
