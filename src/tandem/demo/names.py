"""Name parts for synthetic patients. Common given and family names, combined at random: any
resemblance to a real person is chance, and every record is tagged synthetic."""

GIVEN_FEMALE = (
    "Olivia Emma Ava Sophia Mia Amelia Harper Evelyn Abigail Emily Ella Grace Chloe Lily Aria Nora Zoe "
    "Riley Layla Lucy Maya Rosa Ana Keisha Aaliyah Mei Priya Fatima Leah Hannah Sara Nadia Ines Jade"
).split()
GIVEN_MALE = (
    "Liam Noah Oliver Elijah James William Benjamin Lucas Henry Theodore Jack Levi Mateo Daniel Michael "
    "Owen Samuel Sebastian David Joseph Carlos Jamal Wei Arjun Omar Luis Tyrone Ivan Marco Andre Kofi"
).split()
FAMILY = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Okafor Novak Kowalski Haddad Chen Patel"
).split()
