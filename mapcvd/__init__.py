"""mapcvd: AI-guided long-time atomistic simulation.

Two methods on one stack (LAMMPS ReaxFF, PyTorch, Zarr, Parsl):

* MAP, the Molecular Autonomous Pathfinder: deep-RL agents that drag a molecule
  through a host structure to find energy-efficient diffusion pathways, refined by
  piecewise NEB and turned into times by transition-state theory.
* RL-designed chemical vapour deposition of MoS2: staged reactive MD, a NADE-CVD
  surrogate and a REINFORCE agent (Rajak et al., npj Comput. Mater. 7, 108 (2021),
  doi:10.1038/s41524-021-00535-3).
"""

__version__ = "0.1.0"
