"""MAP, the Molecular Autonomous Pathfinder: environment, density grid, prioritized replay and DQN learner.

The pathways it learns are analysed (NEB, TST) by :mod:`mapcvd.pathways`, which this package never imports.
"""
