/* Links the header-alone objects into one program that runs. */
int main(void)
{
	return 0;
}
