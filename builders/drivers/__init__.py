"""Driver scripts run by a backend's own pinned environment (see ``builders/envs.py``).

Each is a standalone script: it imports nothing of phi_get (phi_get is not
installed in those environments), reads its inputs from the command line,
writes logits to a .npy file and prints one JSON line on stdout.
"""
