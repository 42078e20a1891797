//! Round-robin scheduler: spreads tasks evenly over suitable idle nodes
