"""imagegen domain: jobs, providers, storage and events, free of any Lambda event shape.

Handlers in the sibling packages parse their trigger, call into this package and respond.
Everything here is handed its AWS clients and resource names, so tests pass fakes or moto.
"""
