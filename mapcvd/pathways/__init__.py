"""Pathway analysis: MAP's learned pathways refined piecewise by climbing-image NEB.

MAP (Chen et al., seed 000) cuts the energy profile of a learned pathway into
minimum -> maximum -> minimum segments, refines each by a climbing-image nudged
elastic band (Henkelman, Uberuaga and Jonsson, J. Chem. Phys. 113, 9901 (2000),
doi:10.1063/1.1329672) and turns the barriers into a time by transition-state theory.
The RL agent that learns the pathways is :mod:`mapcvd.map`; nothing there imports this.
"""
