"""MAP, the Molecular Autonomous Pathfinder: environment, density grid, prioritized replay and DQN learner."""
