"""``moslim serve``: preference-controlled chat over an OpenAI-compatible API, the MOSLIM reward as a
service for RL engines (OpenRLHF's ``/get_reward``, verl's ``compute_score``), and a page with one
slider per objective.

- ``engine``: the models and what they compute (no HTTP); ``batching``: dynamic batching;
- ``app``: the FastAPI routes; ``schemas``: request bodies; ``errors``: errors and the key/size gate;
- ``openrlhf_reward`` / ``verl_reward``: the reward in those engines' contracts.
"""
