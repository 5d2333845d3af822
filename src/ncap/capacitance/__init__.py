"""The method's maths: beta_eff of any weighted graph, of an MLP block's line graph (closed form),
the probe that accumulates it during training, and the GBB reduction of network dynamics.

numpy/scipy/torch only; imports nothing else from ncap.
"""
