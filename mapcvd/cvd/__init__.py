"""The RL-designed CVD synthesis of MoS2 (Rajak et al., doi:10.1038/s41524-021-00535-3): phase analysis, schedule ranges, NADE-CVD surrogate and REINFORCE agent."""
