"""Tax-authority profiles: pure, synchronous document building, protection codes and signatures."""
