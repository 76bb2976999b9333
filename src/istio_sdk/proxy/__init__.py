"""The data-plane side of the mesh: what pilot-agent and the injector own for a Pod."""
